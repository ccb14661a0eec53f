"""/metrics for `serve --processes N`: every process's state added up, exactly where it can be.

Each process answers a scrape for the whole group: it gathers every process's `ProcessState`
(server/peers.py) and builds the same JSON document and Prometheus families a single process
serves, from totals. Request counts, Prometheus buckets and the HdrHistogram slots are added,
so percentiles are those of all requests, never an average of percentiles. The pattern's,
backend's and process's state is added key by key (`add_up`); the JSON view also lists each
process's own state.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NotRequired, TypedDict, cast

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from carebench.audit.prometheus import AuditCollector
from carebench.audit.trail import AuditState, AuditStats
from carebench.backends.base import BackendHealth, BackendStats
from carebench.metrics.document import RequestSnapshot, ServerState
from carebench.metrics.process import ProcessStats
from carebench.metrics.prometheus import CarebenchCollector
from carebench.metrics.requests import OUTCOMES, RequestCounts, RequestMetrics
from carebench.patterns.stats import PatternStats

#: Floats that add up across processes (each process has its own rate limit and bucket).
ADDITIVE_FLOATS = frozenset({"rate_limit_per_second", "tokens", "cpu_seconds"})
#: Integers that are a setting each process applies to itself, not a capacity: a circuit
#: breaker's failure threshold, the retries allowed per query, its run of failures.
PER_PROCESS_SETTINGS = frozenset({"threshold", "max", "consecutive_failures"})
#: Texts where the totals show the worst process: one open circuit or one unreachable
#: database is what an alert on the totals must see.
WORST_FIRST = {
    "status": (("down", "degraded", "healthy"),),
    # A circuit breaker's states, and an audit sink's.
    "state": (("open", "half_open", "closed"), ("failed", "closed", "ok")),
}


class ProcessState(TypedDict):
    """What one process tells the others at a scrape: everything its /metrics is built from."""

    pid: int
    requests: RequestCounts
    pattern_state: PatternStats
    backend: BackendStats
    backend_health: BackendHealth
    process: ProcessStats
    #: User plus system CPU time of the process so far.
    cpu_seconds: float
    #: With --audit-log: the process's audit trail.
    audit: NotRequired[AuditStats]


class ProcessEntry(TypedDict):
    """One process in the JSON view: its pid, requests by outcome and state."""

    pid: int
    total_requests: int
    success_requests: int
    error_requests: int
    rejected_requests: int
    timeout_requests: int
    cancelled_requests: int
    invalid_requests: int
    requests_per_second: float
    pattern_state: PatternStats
    backend: BackendStats
    process: ProcessStats
    cpu_seconds: float
    audit: NotRequired[AuditStats]


class GroupDocument(RequestSnapshot, ServerState):
    """GET /metrics of `serve --processes N`: the totals in the single-process fields, then
    every process that answered, and the pids of those that did not."""

    process: ProcessStats
    process_count: int
    processes: list[ProcessEntry]
    unreachable_processes: list[int]
    #: Processes the parent has started in place of ones that died, since it started.
    processes_restarted: int
    audit: NotRequired[AuditStats]


def add_up(values: Sequence[Any], key: str = "") -> Any:
    """The group's value of one state field, from each process's value.

    Integers add up (counts, in flight, queue capacity, limits: capacity is per process),
    except settings each process applies alone (`PER_PROCESS_SETTINGS`); mappings add up key
    by key and lists of integers item by item; floats add up when additive
    (`ADDITIVE_FLOATS`). Other numbers (round-trip times, fractions, percentages, delays) are
    the mean over the processes when they differ; texts in `WORST_FIRST` take the worst
    process's. Otherwise a value every process agrees on is kept, and one they disagree on is
    None (the JSON view's `processes` has each one's).
    """
    first = values[0]
    if all(isinstance(value, dict) for value in values):
        keys = [k for k in first if all(k in value for value in values)]
        return {k: add_up([value[k] for value in values], k) for k in keys}
    if all(_int_list(value) and len(value) == len(first) for value in values):
        return [sum(items) for items in zip(*values, strict=True)]
    if all(_number(value) for value in values):
        integers = all(type(value) is int for value in values)
        if key in ADDITIVE_FLOATS or (integers and key not in PER_PROCESS_SETTINGS):
            return sum(values)
        return first if all(value == first for value in values) else statistics.fmean(values)
    for order in WORST_FIRST.get(key, ()):
        if all(value in order for value in values):
            return min(values, key=order.index)
    return first if all(value == first for value in values) else None


def _int_list(value: Any) -> bool:
    return isinstance(value, list) and all(type(item) is int for item in value)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class GroupTotals:
    """The totals of the processes that answered a scrape; `restarted` is how many processes
    the parent has replaced (their counts are gone with them)."""

    def __init__(
        self, states: Sequence[ProcessState], unreachable: Sequence[int] = (), restarted: int = 0
    ) -> None:
        if not states:
            raise ValueError("a scrape has at least the answering process's own state")
        self.states = sorted(states, key=lambda state: state["pid"])
        self.unreachable = sorted(unreachable)
        self.restarted = restarted
        self.requests = RequestMetrics.added([state["requests"] for state in self.states])

    def _added(self, field: str) -> Any:
        return add_up([state[field] for state in self.states], field)  # type: ignore[literal-required]

    def pattern_state(self) -> PatternStats:
        return cast(PatternStats, self._added("pattern_state"))

    def backend(self) -> BackendStats:
        return cast(BackendStats, self._added("backend"))

    def backend_health(self) -> BackendHealth:
        return cast(BackendHealth, self._added("backend_health"))

    def audit(self) -> AuditStats | None:
        """The processes' audit trails added up (with --audit-log), else None."""
        if not all("audit" in state for state in self.states):
            return None
        return cast(AuditStats, self._added("audit"))

    def document(self) -> GroupDocument:
        """The JSON view: the single-process document's fields as totals, then each process."""
        # A cast: mypy will not build a TypedDict with an optional key (audit) from ** items.
        document = cast(
            GroupDocument,
            {
                **self.requests.snapshot(),
                "pattern_state": self.pattern_state(),
                "backend": self.backend(),
                "process": cast(ProcessStats, self._added("process")),
                "process_count": len(self.states),
                "processes": [_entry(state) for state in self.states],
                "unreachable_processes": self.unreachable,
                "processes_restarted": self.restarted,
            },
        )
        audit = self.audit()
        if audit is not None:
            document["audit"] = audit
        return document

    def registry(self) -> CollectorRegistry:
        """The Prometheus families of the totals: carebench's, as one process exports them,
        plus the processes' resident memory and CPU time added up."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(
            CarebenchCollector(self.requests, self.pattern_state, self.backend, self.backend_health)
        )
        registry.register(GroupProcessCollector(self))
        audit = self.audit()
        if audit is not None:
            registry.register(AuditCollector(AddedAudit.of(audit)))
        return registry


@dataclass(frozen=True, slots=True)
class AddedAudit:
    """The group's audit counts, for the audit families (an AuditTrail's, added up)."""

    written: int
    refused: int
    lost: int
    pending: int
    state: AuditState

    @classmethod
    def of(cls, stats: AuditStats) -> AddedAudit:
        # The state is never None: the three an audit sink has are all in one WORST_FIRST order.
        written, refused, lost = stats["written"], stats["refused"], stats["lost"]
        return cls(written, refused, lost, stats["pending"], stats["state"])


class GroupProcessCollector(Collector):
    """prometheus_client's process families, for the group: a single process's collector
    would describe only the one that answered the scrape."""

    def __init__(self, totals: GroupTotals) -> None:
        self._states = totals.states
        self._unreachable = totals.unreachable
        self._restarted = totals.restarted

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "process_resident_memory_bytes",
            "Resident memory of all server processes, in bytes",
            value=sum(state["process"]["rss_bytes"] for state in self._states),
        )
        yield CounterMetricFamily(
            "process_cpu_seconds",
            "User and system CPU time of all server processes, in seconds",
            value=sum(state["cpu_seconds"] for state in self._states),
        )
        yield GaugeMetricFamily(
            "carebench_processes",
            "Server processes whose state this scrape holds",
            value=len(self._states),
        )
        yield GaugeMetricFamily(
            "carebench_processes_unreachable",
            "Server processes that did not answer this scrape (their counts are missing)",
            value=len(self._unreachable),
        )
        yield CounterMetricFamily(
            "carebench_process_restarts",
            "Server processes started in place of ones that died (their counts are lost)",
            value=self._restarted,
        )


def _entry(state: ProcessState) -> ProcessEntry:
    # Counts only: a latency summary rebuilds an HdrHistogram in Python (~2-5 ms each), and the
    # sampler of a load test reads /metrics 4 times a second; the group's latency is exact in
    # the totals.
    own = RequestMetrics.added([state["requests"]])
    counts = {outcome: own.count(outcome) for outcome in OUTCOMES}
    uptime = own.uptime()
    entry: ProcessEntry = {
        "pid": state["pid"],
        "total_requests": own.total,
        "success_requests": counts["success"],
        "error_requests": counts["error"],
        "rejected_requests": counts["rejected"],
        "timeout_requests": counts["timeout"],
        "cancelled_requests": counts["cancelled"],
        "invalid_requests": counts["invalid"],
        "requests_per_second": round(own.total / uptime, 2) if uptime > 0 else 0.0,
        "pattern_state": state["pattern_state"],
        "backend": state["backend"],
        "process": state["process"],
        "cpu_seconds": state["cpu_seconds"],
    }
    if "audit" in state:
        entry["audit"] = state["audit"]
    return entry
