"""Prometheus text exposition built at scrape time from the same recorders /metrics uses.

Nothing Prometheus-specific runs per request: a custom collector turns the HdrHistograms
and the pattern's state into metric families when scraped, and prometheus_client renders
them (plus its standard process and GC collectors).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

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
    Metric,
)
from prometheus_client.registry import Collector

from carebench.metrics.requests import OUTCOMES, RequestMetrics

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

PATTERN_GAUGES = {
    "in_flight": "Requests admitted by the pattern and not yet answered",
    "queued": "Requests waiting in the pattern's queue",
    "queue_capacity": "Capacity of the pattern's queue",
    "workers": "Worker tasks in the pattern",
    "workers_busy": "Workers currently running a backend query",
}


class CarebenchCollector(Collector):
    """Yields carebench's metric families from live recorders and state callbacks."""

    def __init__(
        self,
        metrics: RequestMetrics,
        pattern_stats: Callable[[], dict[str, Any]],
        backend_stats: Callable[[], dict[str, Any]],
    ) -> None:
        self._metrics = metrics
        self._pattern_stats = pattern_stats
        self._backend_stats = backend_stats

    def collect(self) -> Iterator[Metric]:
        yield from self._request_families()
        yield from self._pattern_families(self._pattern_stats())
        yield from self._backend_families(self._backend_stats())

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

    def _pattern_families(self, stats: dict[str, Any]) -> Iterator[Metric]:
        pattern = self._metrics.pattern
        for key, help_text in PATTERN_GAUGES.items():
            value = stats.get(key)
            if value is not None:
                gauge = GaugeMetricFamily(f"carebench_{key}", help_text, labels=["pattern"])
                gauge.add_metric([pattern], float(value))
                yield gauge
        pool = stats.get("object_pool")
        if pool:
            for field in ("hits", "misses"):
                counter = CounterMetricFamily(
                    f"carebench_object_pool_{field}", f"Object pool {field}", labels=["pattern"]
                )
                counter.add_metric([pattern], pool[field])
                yield counter

    def _backend_families(self, stats: dict[str, Any]) -> Iterator[Metric]:
        backend = str(stats.get("backend", "unknown"))
        for key in ("total_queries", "total_errors", "pool_exhausted"):
            if key in stats:
                name = key.removeprefix("total_")
                counter = CounterMetricFamily(
                    f"carebench_backend_{name}",
                    f"Backend {name.replace('_', ' ')}",
                    labels=["backend"],
                )
                counter.add_metric([backend], stats[key])
                yield counter
        for key in ("active_queries", "waiting_for_connection"):
            if key in stats:
                gauge = GaugeMetricFamily(
                    f"carebench_backend_{key}",
                    f"Backend {key.replace('_', ' ')}",
                    labels=["backend"],
                )
                gauge.add_metric([backend], stats[key])
                yield gauge


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
