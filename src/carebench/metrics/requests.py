"""Request counters and latency per outcome, exported with the reference's field names."""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from typing import TypedDict

from carebench.metrics.document import RequestSnapshot
from carebench.metrics.latency import LatencyRecorder, LatencyState

#: Every way a patient request can end. Each request is counted under exactly one.
OUTCOMES = ("success", "error", "rejected", "timeout", "cancelled", "invalid")
#: Prometheus latency buckets in seconds: fine around the simulated 50-100 ms, coarse above.
#: Counted on the hot path (one bisect) because walking an HdrHistogram in Python at scrape
#: time costs ~0.3 s per outcome.
LATENCY_BUCKETS = (
    0.001, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


class RequestCounts(TypedDict):
    """One process's request metrics, exactly, as plain data (`serve --processes` adds them)."""

    pattern: str
    uptime_seconds: float
    latency: dict[str, LatencyState]
    #: Per outcome, requests per Prometheus bucket (not cumulative; the last one is +Inf).
    buckets: dict[str, list[int]]
    status_codes: dict[str, int]


class RequestMetrics:
    """Counts each request once under its outcome and records its latency by outcome.

    `uptime_source` is any monotonic seconds function (only differences are used: uptime
    and requests per second); tests pass one they move by hand.
    """

    def __init__(self, pattern: str, uptime_source: Callable[[], float] = time.monotonic) -> None:
        self.pattern = pattern
        self._uptime_source = uptime_source
        self._started = uptime_source()
        self.latency: dict[str, LatencyRecorder] = {o: LatencyRecorder() for o in OUTCOMES}
        self.status_codes: dict[int, int] = {}
        self._buckets = {o: [0] * (len(LATENCY_BUCKETS) + 1) for o in OUTCOMES}

    def record(self, outcome: str, seconds: float, status: int) -> None:
        """Count one finished request (hot path: a few dict operations and one record)."""
        self.latency[outcome].record(seconds)
        self._buckets[outcome][bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.status_codes[status] = self.status_codes.get(status, 0) + 1

    def cumulative_buckets(self, outcome: str) -> Iterator[tuple[float, int]]:
        """(upper bound, requests with latency <= bound), ending with (inf, total)."""
        running = 0
        for bound, count in zip(
            (*LATENCY_BUCKETS, float("inf")), self._buckets[outcome], strict=True
        ):
            running += count
            yield bound, running

    def count(self, outcome: str) -> int:
        return self.latency[outcome].count

    @property
    def total(self) -> int:
        return sum(recorder.count for recorder in self.latency.values())

    def uptime(self) -> float:
        return self._uptime_source() - self._started

    def snapshot(self) -> RequestSnapshot:
        """The reference's metrics fields (a superset), computed from the recorders."""
        total = self.total
        duration = self.uptime()
        counts = {outcome: self.count(outcome) for outcome in OUTCOMES}
        overall = LatencyRecorder.merged(self.latency.values())
        return {
            "pattern": self.pattern,
            "total_requests": total,
            "success_requests": counts["success"],
            "error_requests": counts["error"],
            "rejected_requests": counts["rejected"],
            "timeout_requests": counts["timeout"],
            "cancelled_requests": counts["cancelled"],
            "invalid_requests": counts["invalid"],
            "error_rate_percent": _percent(counts["error"], total),
            "rejection_rate_percent": _percent(counts["rejected"], total),
            "timeout_rate_percent": _percent(counts["timeout"], total),
            "duration_seconds": round(duration, 3),
            "requests_per_second": round(total / duration, 2) if duration > 0 else 0.0,
            "latency_ms": overall.summary_ms(),
            "success_latency_ms": self.latency["success"].summary_ms(),
            "rejection_latency_ms": self.latency["rejected"].summary_ms(),
            "status_codes": {str(code): n for code, n in sorted(self.status_codes.items())},
            "latency_histogram": overall.encode(),
        }

    def counts(self) -> RequestCounts:
        """Everything counted so far as plain data, for another process to add up."""
        return {
            "pattern": self.pattern,
            "uptime_seconds": self.uptime(),
            "latency": {outcome: self.latency[outcome].to_state() for outcome in OUTCOMES},
            "buckets": {outcome: list(self._buckets[outcome]) for outcome in OUTCOMES},
            "status_codes": {str(code): n for code, n in self.status_codes.items()},
        }

    @classmethod
    def added(cls, parts: Sequence[RequestCounts]) -> RequestMetrics:
        """The metrics of several processes together: counts, buckets and latency slots added
        (so percentiles are exact), uptime that of the longest running one."""
        total = cls(parts[0]["pattern"] if parts else "", uptime_source=lambda: 0.0)
        for part in parts:
            for outcome in OUTCOMES:
                total.latency[outcome].merge(LatencyRecorder.from_state(part["latency"][outcome]))
                for index, count in enumerate(part["buckets"][outcome]):
                    total._buckets[outcome][index] += count
            for code, n in part["status_codes"].items():
                total.status_codes[int(code)] = total.status_codes.get(int(code), 0) + n
        total._started = -max((part["uptime_seconds"] for part in parts), default=0.0)
        return total


def _percent(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 3) if whole else 0.0
