"""Allocation and garbage-collector measurements: the suite's analogue of Go's `-benchmem`.

What CPython lets us measure, and what it does not:

* Go's `allocs/op` counts every allocation. CPython 3.11's standard library has **no counter
  of total allocations**: `tracemalloc` and `sys.getallocatedblocks()` see live blocks only,
  and the collector's generation-0 counter is net too (a container freed by reference
  counting is subtracted again). An object allocated and freed within a request is
  invisible to all of them. A tracer outside the standard library (memray) can count every
  allocation; the suite does not depend on one.
* What can be measured exactly is what a request *holds*: the blocks and bytes alive while
  requests are in flight (`AllocationTracer.sample`, a tracemalloc snapshot compared with
  one taken before the batch), the high-water mark of traced memory (`peak_bytes`, which
  also catches short-lived buffers that happen to coexist at the peak), and what is still
  alive after the batch and a full collection (`retained_*`, a leak detector).
* Churn of container objects costs CPython garbage-collector work: a generation-0 collection
  runs once net container allocations exceed a threshold (700), so request state that lives
  across awaits, reference cycles and growing pools all show up as collections and pause
  time. `GcMonitor` counts both through `gc.callbacks`, without tracemalloc (which would
  inflate pause times), so run it on its own batch.

tracemalloc slows allocation several times over: never trace inside timed rounds.
"""

from __future__ import annotations

import gc
import time
import tracemalloc
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

#: Frames kept per traced block: one is enough to attribute a block to a line, and cheapest.
TRACE_FRAMES = 1


@dataclass(frozen=True, slots=True)
class GcWork:
    """Collections per generation and the total time spent inside them."""

    collections: tuple[int, int, int]
    pause_seconds: float

    @property
    def total_collections(self) -> int:
        return sum(self.collections)

    def per_1k(self, requests: int) -> dict[str, float]:
        """Collections and pause milliseconds per 1000 requests."""
        scale = 1000.0 / requests
        return {
            "gc_collections_per_1k_requests": round(self.total_collections * scale, 4),
            "gc_pause_ms_per_1k_requests": round(self.pause_seconds * 1000.0 * scale, 6),
        }


@dataclass(slots=True)
class GcMonitor:
    """Counts collections and their pause time while active (a context manager).

    The pause of a collection is the time between the collector's "start" and "stop"
    callbacks; a full collection forced before the batch is not counted.
    """

    _collections: list[int] = field(default_factory=lambda: [0, 0, 0])
    _pause: float = 0.0
    _started: float = 0.0

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self._pause += time.perf_counter() - self._started
            self._collections[info["generation"]] += 1

    def __enter__(self) -> GcMonitor:
        gc.collect()
        gc.callbacks.append(self._on_gc)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        gc.callbacks.remove(self._on_gc)

    @property
    def work(self) -> GcWork:
        young, middle, old = self._collections
        return GcWork((young, middle, old), self._pause)


@dataclass(frozen=True, slots=True)
class TracedMemory:
    """What tracemalloc saw during one batch (see the module docstring for the caveats)."""

    #: Requests in flight when the in-flight snapshot was taken (0: no sample was taken).
    in_flight: int
    #: Blocks and bytes allocated since the batch started and alive at that moment.
    in_flight_blocks: int
    in_flight_bytes: int
    #: High-water mark of traced memory during the batch, above its level at the start.
    peak_bytes: int
    #: Allocated during the batch and still alive after it and a full collection.
    retained_blocks: int
    retained_bytes: int

    def per_request(self, requests: int) -> dict[str, float]:
        """Per in-flight request (held state, peak) and per 1000 requests (retained)."""
        held_by = max(self.in_flight, 1)
        return {
            "allocs_per_request": round(self.in_flight_blocks / held_by, 2),
            "bytes_per_request": round(self.in_flight_bytes / held_by, 1),
            "peak_bytes_per_request": round(self.peak_bytes / held_by, 1),
            "retained_blocks_per_1k_requests": round(self.retained_blocks * 1000 / requests, 2),
            "retained_bytes_per_1k_requests": round(self.retained_bytes * 1000 / requests, 1),
        }


def _grown(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot) -> tuple[int, int]:
    """Blocks and bytes added between two snapshots, summed over the lines that grew."""
    stats = after.compare_to(before, "lineno")
    blocks = sum(stat.count_diff for stat in stats if stat.count_diff > 0)
    size = sum(stat.size_diff for stat in stats if stat.size_diff > 0)
    return blocks, size


class AllocationTracer:
    """Traces one batch: `start()`, optionally `sample(in_flight)` mid-batch, then `stop()`.

    Only allocations made after `start()` are traced, so snapshots stay small; the tracer's
    own allocations (snapshots, this module) are filtered out.
    """

    def __init__(self) -> None:
        self._baseline: tracemalloc.Snapshot | None = None
        self._start_bytes = 0
        self._in_flight = 0
        self._held = (0, 0)
        self._peak = 0

    def _snapshot(self) -> tracemalloc.Snapshot:
        ignored = (tracemalloc.__file__, __file__)
        return tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(False, path) for path in ignored]
        )

    def start(self) -> None:
        if tracemalloc.is_tracing():
            raise RuntimeError("tracemalloc is already tracing; stop it before measuring")
        gc.collect()
        tracemalloc.start(TRACE_FRAMES)
        self._baseline = self._snapshot()
        self._start_bytes = tracemalloc.get_traced_memory()[0]
        self._in_flight, self._held, self._peak = 0, (0, 0), 0
        tracemalloc.reset_peak()

    def sample(self, in_flight: int) -> None:
        """Record what is alive now, with `in_flight` requests in flight (first call only)."""
        if self._baseline is None or self._in_flight:
            return
        self._in_flight = in_flight
        # The snapshot itself is traced: keep the peak seen so far, and restart it afterwards.
        self._peak = tracemalloc.get_traced_memory()[1]
        self._held = _grown(self._baseline, self._snapshot())
        tracemalloc.reset_peak()

    def stop(self) -> TracedMemory:
        if self._baseline is None:
            raise RuntimeError("AllocationTracer.stop() called before start()")
        peak = max(self._peak, tracemalloc.get_traced_memory()[1]) - self._start_bytes
        gc.collect()
        retained = _grown(self._baseline, self._snapshot())
        tracemalloc.stop()
        self._baseline = None
        return TracedMemory(
            in_flight=self._in_flight,
            in_flight_blocks=self._held[0],
            in_flight_bytes=self._held[1],
            peak_bytes=max(peak, 0),
            retained_blocks=retained[0],
            retained_bytes=retained[1],
        )
