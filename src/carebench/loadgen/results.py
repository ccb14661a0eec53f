"""What a load test measured: outcomes, latency histograms, a timeline, and its summary."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NotRequired, TypedDict, get_args

import numpy as np
import numpy.typing as npt

from carebench.faults.timeline import FaultWindowReport
from carebench.loadgen.machine import MachineDescription
from carebench.loadgen.sampler import ServerRestarts, ServerSample
from carebench.metrics.latency import LatencyRecorder, LatencySummary, SpectrumPoint

#: The version of LoadTestResult's JSON shape; a saved file of another version is refused.
SCHEMA_VERSION = 1


class OutcomeCounts(TypedDict):
    """Requests by how they ended, as the client saw it."""

    success: int
    #: Refused by admission control (503 or 429).
    rejected: int
    backend_error: int
    client_error: int
    timeout: int
    connection_error: int


Outcome = Literal[
    "success", "rejected", "backend_error", "client_error", "timeout", "connection_error"
]
#: Every way a request can end, as the client sees it. Each request is counted under one.
OUTCOMES: tuple[Outcome, ...] = get_args(Outcome)
#: Statuses that mean "refused by admission control": 503 (shed) and 429 (rate limited).
REJECTION_STATUSES = frozenset({503, 429})
_OUTCOME_CODES: dict[Outcome, int] = {outcome: code for code, outcome in enumerate(OUTCOMES)}
#: Requests RunRecorder buffers before folding them into its histograms.
FLUSH_EVERY = 4096


class TimelinePoint(OutcomeCounts):
    """Requests completed in one interval of the run (starting `t` seconds in), per second."""

    t: float
    completed: int
    throughput: float
    goodput: float
    #: None for an interval in which nothing completed.
    p50_ms: float | None
    p99_ms: float | None


class PriorityClassResult(TypedDict):
    """One priority class's outcomes, and the latency of its successes."""

    total_requests: int
    outcomes: OutcomeCounts
    success_rate_percent: float
    rejection_rate_percent: float
    success_latency_ms: LatencySummary


class RunSummary(TypedDict):
    """What the client measured: the reference's result keys plus outcomes, goodput and the
    latency spectrum."""

    total_requests: int
    success_requests: int
    #: Every failure that is not a rejection (backend, client, timeout, connection).
    error_requests: int
    rejected_requests: int
    duration_seconds: float
    #: Attempts per second: every request sent, rejected ones included.
    requests_per_second: float
    #: Successful responses per second.
    goodput_per_second: float
    latency_ms: LatencySummary
    error_rate_percent: float
    rejection_rate_percent: float
    outcomes: OutcomeCounts
    #: HTTP status (as a string: a JSON key) -> responses.
    status_codes: dict[str, int]
    success_latency_ms: LatencySummary
    rejection_latency_ms: LatencySummary
    latency_spectrum: list[SpectrumPoint]
    #: HdrHistogram's compressed base64 encoding of every latency.
    latency_histogram: str
    timeline: list[TimelinePoint]
    #: Per X-Request-Priority class, with --priorities; None otherwise.
    by_priority: dict[str, PriorityClassResult] | None


class OpenLoopReport(TypedDict):
    """Whether an open-loop run kept its arrival schedule."""

    target_rate: float
    arrivals: str
    scheduled_requests: int
    achieved_rate: float
    max_lag_ms: float
    schedule_kept: bool
    corrected: str
    #: Latency from each request's actual send (latency_ms is from its intended send).
    uncorrected_latency_ms: LatencySummary
    #: Rejections' latency from their actual send: how fast admission control refuses,
    #: without the generator's own lag (absent from results saved before it was added).
    uncorrected_rejection_latency_ms: NotRequired[LatencySummary]


class RunConfigReport(TypedDict):
    """The load a run applied, and the flags of the servers it started."""

    #: Closed loop with a request budget; None when the run was timed.
    requests: int | None
    concurrency: int
    #: Open loop: arrivals per second; None for a closed loop.
    rate: float | None
    duration: float | None
    #: --stages, when the run followed a load shape (then `duration` is its total).
    stages: NotRequired[str | None]
    arrivals: str | None
    timeout: float
    warmup: float
    ids: str
    priorities: str | None
    honor_retry_after: bool
    seed: int | None
    server_args: list[str]
    #: --generators: client processes that shared the load (absent from older results).
    generators: NotRequired[int]


class Affinity(TypedDict):
    """The CPUs the server and the load generator were pinned to."""

    server: list[int]
    loadgen: list[int]


class GeneratorRun(TypedDict):
    """One generator process of a `loadtest --generators N` run."""

    index: int
    #: The CPUs it was pinned to (empty: not pinned).
    cpus: list[int]
    #: Whether one of them is the server's (None: the server's CPUs are unknown, a --target).
    shares_server_core: bool | None
    #: Requests it completed in the measured window, and the CPU it used meanwhile.
    requests: int
    cpu_seconds: float


class LoadTestResult(RunSummary):
    """One pattern's load test, as `carebench loadtest --output` writes it (a list of these).

    The JSON format is a public contract: `cli/report.py` checks saved files against this type.
    """

    schema_version: int
    carebench_version: str
    pattern: str
    #: http (a server per pattern), inprocess, or target (an already-running server).
    mode: str
    #: closed or open.
    loop: str
    target: str | None
    open_loop: OpenLoopReport | None
    server_samples: list[ServerSample]
    interrupted: bool
    config: RunConfigReport
    #: The server's own /metrics document at the end (in-process: the pattern's and backend's
    #: stats), as the server answered it: a --target may be any server.
    server_metrics: dict[str, Any] | None
    #: Only when the load test started the server itself.
    affinity: NotRequired[Affinity]
    machine: NotRequired[MachineDescription]
    #: In a sweep: the offered load (clients, or arrivals per second) of this run.
    level: NotRequired[float]
    #: The server's --faults windows, in seconds since measuring began (when it had some).
    faults: NotRequired[list[FaultWindowReport]]
    #: With --generators N > 1: each generator process (the totals above are their sum).
    generators: NotRequired[list[GeneratorRun]]
    #: Against `serve --processes N`: the processes it replaced during the run (absent when
    #: the server has no such counter: one process, in process, another server).
    server_restarts: NotRequired[ServerRestarts]


def outcome_counts(counts: Mapping[Outcome, int]) -> OutcomeCounts:
    """`counts` (by outcome name) as an OutcomeCounts."""
    return OutcomeCounts(
        success=counts["success"],
        rejected=counts["rejected"],
        backend_error=counts["backend_error"],
        client_error=counts["client_error"],
        timeout=counts["timeout"],
        connection_error=counts["connection_error"],
    )


def classify(status: int) -> Outcome:
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
    counts: dict[Outcome, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    latency: LatencyRecorder = field(default_factory=lambda: LatencyRecorder(2))

    def as_dict(self, width: float) -> TimelinePoint:
        total = sum(self.counts.values())
        return {
            "t": round(self.start, 3),
            "completed": total,
            "throughput": round(total / width, 2),
            "goodput": round(self.counts["success"] / width, 2),
            **outcome_counts(self.counts),
            "p50_ms": self.latency.percentile_ms(50.0) if total else None,
            "p99_ms": self.latency.percentile_ms(99.0) if total else None,
        }

    def merge(self, other: Interval) -> None:
        """Add the requests of the same slice of the run as another generator saw it."""
        for outcome, count in other.counts.items():
            self.counts[outcome] += count
        self.latency.merge(other.latency)


@dataclass(slots=True)
class ClassStats:
    """Outcomes of one priority class, and the latency of its successes."""

    counts: dict[Outcome, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    success_latency: LatencyRecorder = field(default_factory=LatencyRecorder)

    def as_dict(self) -> PriorityClassResult:
        total = sum(self.counts.values())
        return {
            "total_requests": total,
            "outcomes": outcome_counts(self.counts),
            "success_rate_percent": _percent(self.counts["success"], total),
            "rejection_rate_percent": _percent(self.counts["rejected"], total),
            "success_latency_ms": self.success_latency.summary_ms(),
        }

    def merge(self, other: ClassStats) -> None:
        for outcome, count in other.counts.items():
            self.counts[outcome] += count
        self.success_latency.merge(other.success_latency)


#: HTTP statuses have three digits: 100-999 (httptools rejects any other).
_STATUS_LIMIT = 1000


def _key(status: int, outcome: Outcome) -> int:
    return status << 3 | _OUTCOME_CODES[outcome]


#: The key of a response whose outcome follows from its status, by status.
_KEY_BY_STATUS = np.array([_key(s, classify(s)) for s in range(_STATUS_LIMIT)], dtype=np.int64)


class Pending:
    """Requests recorded but not yet folded into a RunRecorder's histograms: per request its
    key, latency and completion time.

    A key is either a response's bare HTTP status (>= 0), whose outcome follows from it, or
    `~(status << 3 | outcome code)` (< 0) for a request whose outcome is given (a timeout,
    a connection error: status 0). The closed loop's settle appends a response's status
    directly, doing `record`'s work without a call or a lookup per request, and calls
    `RunRecorder.flush_if_full` once per round of responses.

    Lists rather than arrays: a list's append is ~25 ns a request cheaper than an array's,
    which parses its argument, and numpy converts the lists at flush time (append and
    conversion measured together).
    """

    __slots__ = ("keys", "latencies", "times")

    def __init__(self) -> None:
        self.keys: list[int] = []
        self.latencies: list[float] = []
        self.times: list[float] = []


class RunRecorder:
    """Collects one run's results. Memory is bounded: histograms, not lists of samples.

    `record` runs once per request on the load generator's hot path, so it only appends the
    request to a short buffer (~0.2 us); every FLUSH_EVERY requests, and before anything is
    read, the buffer is folded into the histograms, status counts and timeline in a few
    vectorised steps. Reading `latency`, `timeline`, `status_codes` or `total` is always
    up to date.
    """

    def __init__(self, started: float, interval: float = 0.5) -> None:
        self.started = started
        self.interval = interval
        self._latency = {outcome: LatencyRecorder() for outcome in OUTCOMES}
        self.uncorrected = LatencyRecorder()
        self.uncorrected_rejections = LatencyRecorder()
        self._status_codes: dict[int, int] = {}
        self._timeline: list[Interval] = []
        self.max_lag = 0.0
        self.by_priority: dict[str, ClassStats] = {}
        #: Not yet folded in.
        self.pending = Pending()

    def record(
        self,
        outcome: Outcome,
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
        if uncorrected >= 0:
            self.uncorrected.record(uncorrected)
            if outcome == "rejected":
                self.uncorrected_rejections.record(uncorrected)
        pending = self.pending
        pending.keys.append(~_key(status, outcome))
        pending.latencies.append(latency)
        pending.times.append(now)
        if len(pending.times) >= FLUSH_EVERY:
            self._flush()

    def flush_if_full(self) -> None:
        """Fold `pending` in once it holds FLUSH_EVERY requests (for callers appending to it
        directly), so memory stays bounded."""
        if len(self.pending.times) >= FLUSH_EVERY:
            self._flush()

    @property
    def latency(self) -> dict[Outcome, LatencyRecorder]:
        """Latency of every request by outcome."""
        self._flush()
        return self._latency

    @property
    def status_codes(self) -> dict[int, int]:
        """Responses by HTTP status (requests that got none are not counted)."""
        self._flush()
        return self._status_codes

    @property
    def timeline(self) -> list[Interval]:
        """Completed requests by `interval`-long slice of the run, from `started`."""
        self._flush()
        return self._timeline

    def _flush(self) -> None:
        pending = self.pending
        if not pending.times:
            return
        size = len(pending.times)
        # fromiter with a count: ~20 % faster than np.array on a list of Python numbers.
        given = np.fromiter(pending.keys, dtype=np.int64, count=size)
        keys = np.where(given < 0, ~given, _KEY_BY_STATUS[np.clip(given, 0, _STATUS_LIMIT - 1)])
        latencies = np.fromiter(pending.latencies, dtype=np.float64, count=size)
        times = np.fromiter(pending.times, dtype=np.float64, count=size)
        del pending.keys[:], pending.latencies[:], pending.times[:]
        outcomes = keys & 7
        statuses = keys >> 3
        for status, count in _tally(statuses[statuses > 0]):
            self._status_codes[status] = self._status_codes.get(status, 0) + count
        for code, _count in _tally(outcomes):
            self._latency[OUTCOMES[code]].record_many(latencies[outcomes == code])
        slots = np.maximum(((times - self.started) / self.interval).astype(np.int64), 0)
        last = int(slots.max())
        while len(self._timeline) <= last:
            self._timeline.append(Interval(len(self._timeline) * self.interval))
        for index, _count in _tally(slots):
            chosen = slots == index
            slot = self._timeline[index]
            slot.latency.record_many(latencies[chosen])
            for code, count in _tally(outcomes[chosen]):
                slot.counts[OUTCOMES[code]] += count

    def merge(self, other: RunRecorder) -> None:
        """Add everything `other` recorded: another generator's part of the same run.

        Both must share `started` and `interval` (generators align on one start time), so
        each timeline slot adds to the same slot; the result is what one recorder fed every
        request would hold, percentiles included (histograms add, they are not averaged).
        """
        if (other.started, other.interval) != (self.started, self.interval):
            raise ValueError(
                f"cannot merge a run started at {other.started} (interval {other.interval}) "
                f"into one started at {self.started} (interval {self.interval})"
            )
        for outcome, recorder in other.latency.items():
            self.latency[outcome].merge(recorder)
        self.uncorrected.merge(other.uncorrected)
        self.uncorrected_rejections.merge(other.uncorrected_rejections)
        codes = self.status_codes
        for status, count in other.status_codes.items():
            codes[status] = codes.get(status, 0) + count
        timeline = self.timeline
        for slot in other.timeline:
            index = round(slot.start / self.interval)
            while len(timeline) <= index:
                timeline.append(Interval(len(timeline) * self.interval))
            timeline[index].merge(slot)
        self.max_lag = max(self.max_lag, other.max_lag)
        for name, stats in other.by_priority.items():
            self.by_priority.setdefault(name, ClassStats()).merge(stats)

    def note_lag(self, lag: float) -> None:
        if lag > self.max_lag:
            self.max_lag = lag

    def count(self, outcome: Outcome) -> int:
        return self.latency[outcome].count

    @property
    def total(self) -> int:
        return sum(recorder.count for recorder in self.latency.values())

    def summary(self, duration: float) -> RunSummary:
        """The reference's result keys plus outcomes, goodput and the latency spectrum."""
        total = self.total
        counts = outcome_counts({outcome: self.count(outcome) for outcome in OUTCOMES})
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


def _tally(values: npt.NDArray[np.int64]) -> list[tuple[int, int]]:
    """(value, how many times it occurs) for each distinct value, in order, as Python ints.

    Counted with bincount over the values' range (statuses, outcome codes, timeline slots:
    a few hundred at most) rather than np.unique, whose sort cost ~40 us per 4,096 values.
    """
    if not len(values):
        return []
    low = int(values.min())
    per_value = np.bincount(values - low)
    present = np.flatnonzero(per_value)
    return list(zip((present + low).tolist(), per_value[present].tolist(), strict=True))


def _rate(count: int, seconds: float) -> float:
    return round(count / seconds, 2) if seconds > 0 else 0.0


def _percent(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 3) if whole else 0.0
