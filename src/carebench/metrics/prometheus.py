"""Prometheus text exposition built at scrape time from the same recorders /metrics uses.

Nothing Prometheus-specific runs per request: a custom collector turns the HdrHistograms
and the pattern's state into metric families when scraped, and prometheus_client renders
them (plus its standard process and GC collectors).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Literal

from prometheus_client import (
    GC_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from carebench import __version__
from carebench.backends.base import BackendHealth, BackendStats, BreakerStats, FaultStats
from carebench.faults.schedule import FAULT_KINDS
from carebench.metrics.requests import OUTCOMES, RequestMetrics
from carebench.patterns.stats import PatternStats

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: pattern_state key -> (metric name, help, scale to base units). Absent or None: not exported.
PATTERN_GAUGES = {
    "in_flight": ("in_flight", "Requests admitted by the pattern and not yet answered", 1.0),
    "queued": ("queued", "Requests waiting in the pattern's queue", 1.0),
    "queue_capacity": ("queue_capacity", "Capacity of the pattern's queue", 1.0),
    "workers": ("workers", "Worker tasks in the pattern", 1.0),
    "workers_busy": ("workers_busy", "Workers currently running a backend query", 1.0),
    "limit": ("concurrency_limit", "Current concurrency limit", 1.0),
    "tokens": ("rate_limit_tokens", "Tokens left in the rate limiter's bucket", 1.0),
    "min_rtt_ms": ("min_rtt_seconds", "Lowest backend round trip seen by the limiter", 1e-3),
    "sample_rtt_ms": ("sample_rtt_seconds", "Latest backend round trip seen by the limiter", 1e-3),
    "shed_fraction": ("shed_fraction", "Share of arrivals the shedder's controller refuses", 1.0),
    "queue_delay_ms": ("queue_delay_seconds", "p90 queueing delay of the last interval", 1e-3),
    "target_delay_ms": ("target_delay_seconds", "Queueing delay the shedder holds", 1e-3),
    "service_p90_ms": ("service_p90_seconds", "p90 service time of the tuner's last window", 1e-3),
    "congested": ("queue_congested", "1 while the queue has stood for a CoDel interval", 1.0),
    "queue_timeout_ms": ("queue_timeout_seconds", "How long a request may wait queued", 1e-3),
}
PATTERN_COUNTERS = {
    "rejected_queue_full": "Requests rejected because the queue was full",
    "rejected_at_limit": "Requests rejected at the concurrency limit",
    "rate_limited": "Requests refused by the rate limit",
    "shed_for_priority": "Queued requests shed for more urgent ones",
    "shed_by_threshold": "Requests refused on arrival by the shedder's priority threshold",
    "expired_in_queue": "Requests whose deadline passed while queued",
    "skipped_client_gone": "Queued requests skipped because the client left",
    "shed_queue_timeout": "Queued requests shed for waiting longer than the queue timeout",
    "congested_episodes": "Times the queue turned congested (CoDel)",
    "served_lifo": "Queued requests served newest first while congested",
}
BACKEND_COUNTERS: tuple[Literal["total_queries", "total_errors", "pool_exhausted"], ...] = (
    "total_queries",
    "total_errors",
    "pool_exhausted",
)
BACKEND_GAUGES: tuple[Literal["active_queries", "waiting_for_connection"], ...] = (
    "active_queries",
    "waiting_for_connection",
)
BREAKER_STATES = ("closed", "half_open", "open")


def _family(
    kind: type[GaugeMetricFamily] | type[CounterMetricFamily],
    name: str,
    help_text: str,
    labels: dict[str, str],
    value: float,
) -> Metric:
    """A one-sample metric family."""
    family = kind(name, help_text, labels=list(labels))
    family.add_metric(list(labels.values()), value)
    return family


class CarebenchCollector(Collector):
    """Yields carebench's metric families from live recorders and state callbacks."""

    def __init__(
        self,
        metrics: RequestMetrics,
        pattern_stats: Callable[[], PatternStats],
        backend_stats: Callable[[], BackendStats],
        backend_health: Callable[[], BackendHealth] | None = None,
    ) -> None:
        self._metrics = metrics
        self._pattern_stats = pattern_stats
        self._backend_stats = backend_stats
        self._backend_health = backend_health

    def collect(self) -> Iterator[Metric]:
        backend = self._backend_stats()
        yield self._info(backend["backend"])
        yield from self._request_families()
        yield from self._pattern_families(self._pattern_stats())
        yield from self._backend_families(backend)
        if self._backend_health is not None:
            up = self._backend_health()["status"] != "down"
            help_text = "0 while the backend cannot be reached (a --faults outage, a database down)"
            labels = {"backend": backend["backend"]}
            yield _family(GaugeMetricFamily, "carebench_backend_up", help_text, labels, float(up))

    def _info(self, backend: str) -> Metric:
        """carebench_info{pattern, backend, version} 1: joined on instance, it puts a pattern
        label on the process families (RSS by pattern in the dashboard)."""
        info = InfoMetricFamily("carebench", "The server's pattern, backend and version")
        info.add_metric(
            [], {"pattern": self._metrics.pattern, "backend": backend, "version": __version__}
        )
        return info

    def _request_families(self) -> Iterator[Metric]:
        pattern = self._metrics.pattern
        labels = ["pattern", "outcome"]
        requests = CounterMetricFamily(
            "carebench_requests", "Patient requests by outcome", labels=labels
        )
        duration = HistogramMetricFamily(
            "carebench_request_duration_seconds", "Patient request latency", labels=labels
        )
        for outcome in OUTCOMES:
            recorder = self._metrics.latency[outcome]
            requests.add_metric([pattern, outcome], recorder.count)
            buckets = [(_le(b), n) for b, n in self._metrics.cumulative_buckets(outcome)]
            duration.add_metric([pattern, outcome], buckets, recorder.total_seconds())
        yield requests
        yield duration

    def _pattern_families(self, stats: PatternStats) -> Iterator[Metric]:
        labels = {"pattern": self._metrics.pattern}
        for key, (name, help_text, scale) in PATTERN_GAUGES.items():
            value = stats.get(key)
            if isinstance(value, int | float):
                scaled = float(value) * scale
                yield _family(GaugeMetricFamily, f"carebench_{name}", help_text, labels, scaled)
        for key, help_text in PATTERN_COUNTERS.items():
            count = stats.get(key)
            if isinstance(count, int):
                name = f"carebench_{key}"
                yield _family(CounterMetricFamily, name, help_text, labels, count)
        by_priority = stats.get("queued_by_priority")
        if by_priority is not None:
            queued = GaugeMetricFamily(
                "carebench_queued_by_priority",
                "Requests waiting in the pattern's queue, by priority class",
                labels=["pattern", "priority"],
            )
            for priority, depth in by_priority.items():
                queued.add_metric([self._metrics.pattern, priority], depth)
            yield queued
        pool = stats["object_pool"]
        if pool:
            for field in ("hits", "misses"):
                name, help_text = f"carebench_object_pool_{field}", f"Object pool {field}"
                yield _family(CounterMetricFamily, name, help_text, labels, pool[field])

    def _backend_families(self, stats: BackendStats) -> Iterator[Metric]:
        labels = {"backend": stats["backend"]}
        for key in BACKEND_COUNTERS:
            count = stats.get(key)
            if count is not None:
                name = key.removeprefix("total_")
                help_text = f"Backend {name.replace('_', ' ')}"
                yield _family(
                    CounterMetricFamily, f"carebench_backend_{name}", help_text, labels, count
                )
        for gauge in BACKEND_GAUGES:
            value = stats.get(gauge)
            if value is not None:
                help_text = f"Backend {gauge.replace('_', ' ')}"
                yield _family(
                    GaugeMetricFamily, f"carebench_backend_{gauge}", help_text, labels, value
                )
        if "retries" in stats:
            retried = stats["retries"]["retried"]
            help_text = "Backend queries retried after a transient error"
            yield _family(CounterMetricFamily, "carebench_retries", help_text, labels, retried)
        if "circuit_breaker" in stats:
            yield from self._breaker_families(stats["circuit_breaker"], labels)
        if "faults" in stats:
            yield from self._fault_families(stats["faults"], labels)

    def _fault_families(self, faults: FaultStats, labels: dict[str, str]) -> Iterator[Metric]:
        active = GaugeMetricFamily(
            "carebench_fault_active",
            "1 while the --faults schedule has a fault of this kind in effect",
            labels=[*labels, "kind"],
        )
        injected = CounterMetricFamily(
            "carebench_faults_injected",
            "Backend queries an injected fault failed or slowed",
            labels=[*labels, "kind"],
        )
        now = faults["active"]
        for kind in FAULT_KINDS:
            in_effect = now is not None and now["kind"] == kind
            active.add_metric([*labels.values(), kind], 1.0 if in_effect else 0.0)
            injected.add_metric([*labels.values(), kind], faults["injected"].get(kind, 0))
        yield active
        yield injected

    def _breaker_families(self, breaker: BreakerStats, labels: dict[str, str]) -> Iterator[Metric]:
        state = GaugeMetricFamily(
            "carebench_circuit_state",
            "1 for the circuit breaker's current state",
            labels=[*labels, "state"],
        )
        for name in BREAKER_STATES:
            state.add_metric([*labels.values(), name], 1.0 if breaker["state"] == name else 0.0)
        yield state
        transitions = CounterMetricFamily(
            "carebench_circuit_transitions",
            "Circuit breaker state changes",
            labels=[*labels, "transition"],
        )
        for transition, count in breaker["transitions"].items():
            transitions.add_metric([*labels.values(), transition], count)
        yield transitions
        help_text = "Requests failed fast by an open circuit"
        yield _family(
            CounterMetricFamily,
            "carebench_circuit_fast_failures",
            help_text,
            labels,
            breaker["fast_failures"],
        )


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


def build_registry(collector: CarebenchCollector) -> CollectorRegistry:
    """A private registry: carebench's families plus the process and GC collectors."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    registry.register(PROCESS_COLLECTOR)
    registry.register(GC_COLLECTOR)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The text exposition format."""
    return generate_latest(registry)
