"""Process state for /metrics: resident memory and garbage-collector activity."""

from __future__ import annotations

import gc
import os
import resource
from typing import TypedDict

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class ProcessStats(TypedDict):
    rss_bytes: int
    peak_rss_bytes: int
    #: Collections so far in each of the garbage collector's generations.
    gc_collections: list[int]


def rss_bytes() -> int:
    """Current resident set size (peak RSS where /proc is unavailable)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE_SIZE
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def process_stats() -> ProcessStats:
    """RSS, peak RSS and GC collections per generation."""
    return {
        "rss_bytes": rss_bytes(),
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "gc_collections": [generation["collections"] for generation in gc.get_stats()],
    }
