"""Concurrency-limit algorithms (AIMD, Gradient2, Vegas) that discover a backend's capacity.

Ported in spirit from Netflix's concurrency-limits library, with the same defaults. Each
algorithm is a pure state machine fed with samples (RTT, requests in flight, whether the
request was dropped); it has no clock and no I/O, so it can be tested and reused anywhere.
"""
