"""What a load test measured: outcomes, latency histograms, a timeline, and its summary."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from carebench.metrics.latency import LatencyRecorder

#: Every way a request can end, as the client sees it. Each request is counted under one.
OUTCOMES = ("success", "rejected", "backend_error", "client_error", "timeout", "connection_error")
#: Statuses that mean "refused by admission control": 503 (shed) and 429 (rate limited).
REJECTION_STATUSES = frozenset({503, 429})


def classify(status: int) -> str:
    """The outcome of an HTTP status."""
    if 200 <= status < 300:
        return "success"
    if status in REJECTION_STATUSES:
        return "rejected"
    if status >= 500:
        return "backend_error"
    return "client_error"


@dataclass(slots=True)
class Interval:
    """Requests completed during one slice of the run, for throughput and p99 over time."""

    start: float
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    latency: LatencyRecorder = field(default_factory=lambda: LatencyRecorder(2))

    def as_dict(self, width: float) -> dict[str, Any]:
        total = sum(self.counts.values())
        return {
            "t": round(self.start, 3),
            "completed": total,
            "throughput": round(total / width, 2),
            "goodput": round(self.counts["success"] / width, 2),
            **{outcome: n for outcome, n in self.counts.items()},
            "p50_ms": self.latency.percentile_ms(50.0) if total else None,
            "p99_ms": self.latency.percentile_ms(99.0) if total else None,
        }


@dataclass(slots=True)
class ClassStats:
    """Outcomes of one priority class, and the latency of its successes."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    success_latency: LatencyRecorder = field(default_factory=LatencyRecorder)

    def as_dict(self) -> dict[str, Any]:
        total = sum(self.counts.values())
        return {
            "total_requests": total,
            "outcomes": dict(self.counts),
            "success_rate_percent": _percent(self.counts["success"], total),
            "rejection_rate_percent": _percent(self.counts["rejected"], total),
            "success_latency_ms": self.success_latency.summary_ms(),
        }


class RunRecorder:
    """Collects one run's results. Memory is bounded: histograms, not lists of samples."""

    def __init__(self, started: float, interval: float = 0.5) -> None:
        self.started = started
        self.interval = interval
        self.latency = {outcome: LatencyRecorder() for outcome in OUTCOMES}
        self.uncorrected = LatencyRecorder()
        self.status_codes: dict[int, int] = {}
        self.timeline: list[Interval] = []
        self.max_lag = 0.0
        self.by_priority: dict[str, ClassStats] = {}

    def record(
        self,
        outcome: str,
        latency: float,
        now: float,
        status: int = 0,
        uncorrected: float = -1.0,
        priority: str | None = None,
    ) -> None:
        """One finished request: its outcome, latency (seconds) and completion time."""
        if priority is not None:
            stats = self.by_priority.get(priority) or self.by_priority.setdefault(
                priority, ClassStats()
            )
            stats.counts[outcome] += 1
            if outcome == "success":
                stats.success_latency.record(latency)
        self.latency[outcome].record(latency)
        if uncorrected >= 0:
            self.uncorrected.record(uncorrected)
        if status:
            self.status_codes[status] = self.status_codes.get(status, 0) + 1
        slot = self._interval(now)
        slot.counts[outcome] += 1
        slot.latency.record(latency)

    def note_lag(self, lag: float) -> None:
        if lag > self.max_lag:
            self.max_lag = lag

    def _interval(self, now: float) -> Interval:
        index = int((now - self.started) / self.interval)
        while len(self.timeline) <= index:
            self.timeline.append(Interval(len(self.timeline) * self.interval))
        return self.timeline[index]

    def count(self, outcome: str) -> int:
        return self.latency[outcome].count

    @property
    def total(self) -> int:
        return sum(recorder.count for recorder in self.latency.values())

    def summary(self, duration: float) -> dict[str, Any]:
        """The reference's result keys plus outcomes, goodput and the latency spectrum."""
        total = self.total
        counts = {outcome: self.count(outcome) for outcome in OUTCOMES}
        errors = total - counts["success"] - counts["rejected"]
        overall = LatencyRecorder.merged(self.latency.values())
        return {
            "total_requests": total,
            "success_requests": counts["success"],
            "error_requests": errors,
            "rejected_requests": counts["rejected"],
            "duration_seconds": round(duration, 3),
            "requests_per_second": _rate(total, duration),
            "goodput_per_second": _rate(counts["success"], duration),
            "latency_ms": overall.summary_ms(),
            "error_rate_percent": _percent(errors, total),
            "rejection_rate_percent": _percent(counts["rejected"], total),
            "outcomes": counts,
            "status_codes": {str(code): n for code, n in sorted(self.status_codes.items())},
            "success_latency_ms": self.latency["success"].summary_ms(),
            "rejection_latency_ms": self.latency["rejected"].summary_ms(),
            "latency_spectrum": overall.spectrum_ms(),
            "latency_histogram": overall.encode(),
            "timeline": [slot.as_dict(self.interval) for slot in self.timeline],
            "by_priority": {
                name: stats.as_dict() for name, stats in sorted(self.by_priority.items())
            }
            or None,
        }


def _rate(count: int, seconds: float) -> float:
    return round(count / seconds, 2) if seconds > 0 else 0.0


def _percent(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 3) if whole else 0.0
