"""Prometheus exposition: parsed back with prometheus_client's own parser."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from carebench import __version__
from carebench.backends.base import BackendHealth, BackendStats
from carebench.metrics.prometheus import CarebenchCollector, build_registry, render
from carebench.metrics.requests import LATENCY_BUCKETS, OUTCOMES, RequestMetrics
from carebench.patterns.stats import PatternStats, PoolStats

POOL: PoolStats = {"hits": 0, "misses": 1, "created": 1, "idle": 1, "hit_rate_percent": 0.0}
PATTERN_STATS: PatternStats = {
    "name": "optimized",
    "in_flight": 4,
    "queued": 7,
    "queue_capacity": 100,
    "workers": 20,
    "workers_busy": None,
    "object_pool": {"jobs": POOL, "responses": POOL, "hits": 9, "misses": 2},
}
IDLE_PATTERN: PatternStats = {
    "name": "naive",
    "in_flight": 0,
    "queued": 0,
    "queue_capacity": None,
    "workers": None,
    "workers_busy": None,
    "object_pool": None,
}
BACKEND_STATS: BackendStats = {
    "backend": "simulator",
    "total_queries": 120,
    "total_errors": 6,
    "pool_exhausted": 3,
    "active_queries": 5,
    "waiting_for_connection": 2,
}


def scrape(metrics: RequestMetrics, pattern_stats: PatternStats = PATTERN_STATS) -> list[Sample]:
    collector = CarebenchCollector(metrics, lambda: pattern_stats, lambda: BACKEND_STATS)
    text = render(build_registry(collector)).decode()
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def value(samples: list[Sample], name: str, **labels: str) -> float:
    matches = [s.value for s in samples if s.name == name and labels.items() <= s.labels.items()]
    assert len(matches) == 1, (name, labels, matches)
    return matches[0]


def traffic() -> RequestMetrics:
    metrics = RequestMetrics("workerpool")
    for seconds in (0.03, 0.06, 0.06, 0.12):
        metrics.record("success", seconds, 200)
    metrics.record("error", 0.09, 500)
    metrics.record("rejected", 0.0004, 503)
    metrics.record("rejected", 0.0004, 503)
    return metrics


@pytest.fixture(scope="module")
def samples() -> list[Sample]:
    """One scrape of `traffic()` shared by the read-only tests (a scrape is costly)."""
    return scrape(traffic())


def test_requests_counter_per_outcome(samples: list[Sample]) -> None:
    """carebench_requests_total has one series per outcome with its count."""
    expected = {
        "success": 4,
        "error": 1,
        "rejected": 2,
        "timeout": 0,
        "cancelled": 0,
        "invalid": 0,
    }
    assert set(expected) == set(OUTCOMES)
    for outcome, count in expected.items():
        got = value(samples, "carebench_requests_total", pattern="workerpool", outcome=outcome)
        assert got == count, outcome


def test_histogram_buckets_are_cumulative_counts(samples: list[Sample]) -> None:
    """Duration buckets count values <= le, +Inf and _count equal the total."""
    name = "carebench_request_duration_seconds_bucket"

    buckets = {
        s.labels["le"]: s.value
        for s in samples
        if s.name == name and s.labels["outcome"] == "success"
    }

    assert len(buckets) == len(LATENCY_BUCKETS) + 1
    assert buckets["0.025"] == 0
    assert buckets["0.05"] == 1
    assert buckets["0.075"] == 3
    assert buckets["0.1"] == 3
    assert buckets["0.15"] == 4
    assert buckets["+Inf"] == 4
    assert value(samples, "carebench_request_duration_seconds_count", outcome="success") == 4
    total = value(samples, "carebench_request_duration_seconds_sum", outcome="success")
    assert abs(total - 0.27) < 0.27 * 1e-3
    assert value(samples, name, outcome="rejected", le="0.001") == 2


def test_pattern_gauges(samples: list[Sample]) -> None:
    """Queue depth, in-flight, capacity and workers are gauges; None values are omitted."""

    assert value(samples, "carebench_in_flight", pattern="workerpool") == 4
    assert value(samples, "carebench_queued", pattern="workerpool") == 7
    assert value(samples, "carebench_queue_capacity", pattern="workerpool") == 100
    assert value(samples, "carebench_workers", pattern="workerpool") == 20
    assert not [s for s in samples if s.name == "carebench_workers_busy"]


def test_object_pool_counters(samples: list[Sample]) -> None:
    """Object pool hits and misses are exported as counters when the pattern has a pool."""

    assert value(samples, "carebench_object_pool_hits_total") == 9
    assert value(samples, "carebench_object_pool_misses_total") == 2


def test_no_object_pool_counters_without_a_pool() -> None:
    """A pattern without an object pool exports no pool counters."""
    samples = scrape(traffic(), pattern_stats=IDLE_PATTERN)

    assert not [s for s in samples if s.name.startswith("carebench_object_pool")]


def test_backend_counters_and_gauges(samples: list[Sample]) -> None:
    """Backend queries, errors and pool exhaustion are counters; active/waiting are gauges."""

    assert value(samples, "carebench_backend_queries_total", backend="simulator") == 120
    assert value(samples, "carebench_backend_errors_total", backend="simulator") == 6
    assert value(samples, "carebench_backend_pool_exhausted_total", backend="simulator") == 3
    assert value(samples, "carebench_backend_active_queries", backend="simulator") == 5
    assert value(samples, "carebench_backend_waiting_for_connection", backend="simulator") == 2


def test_scrape_reflects_requests_recorded_after_registration() -> None:
    """Families are built at scrape time, so later requests show up in the next scrape."""
    metrics = RequestMetrics("naive")
    collector = CarebenchCollector(metrics, lambda: IDLE_PATTERN, lambda: BACKEND_STATS)
    registry = build_registry(collector)
    render(registry)

    metrics.record("success", 0.01, 200)
    text = render(registry).decode()

    samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
    assert value(samples, "carebench_requests_total", pattern="naive", outcome="success") == 1


def test_limiter_and_resilience_families() -> None:
    """Adaptive-limit gauges (in seconds), limiter counters, retries and breaker state export."""
    pattern_stats: PatternStats = {
        **IDLE_PATTERN,
        "name": "adaptive",
        "in_flight": 3,
        "limit": 42,
        "min_rtt_ms": 50.0,
        "sample_rtt_ms": 80.0,
        "rejected_at_limit": 7,
        "tokens": 2.5,
    }
    backend_stats: BackendStats = {
        "backend": "simulator",
        "total_queries": 30,
        "total_errors": 10,
        "retries": {"max": 2, "retried": 9, "gave_up": 1},
        "circuit_breaker": {
            "state": "open",
            "consecutive_failures": 5,
            "threshold": 5,
            "reset_after_seconds": 5.0,
            "fast_failures": 4,
            "transitions": {"closed->open": 1},
        },
    }
    registry = build_registry(
        CarebenchCollector(RequestMetrics("adaptive"), lambda: pattern_stats, lambda: backend_stats)
    )
    found = [
        s for f in text_string_to_metric_families(render(registry).decode()) for s in f.samples
    ]
    assert value(found, "carebench_concurrency_limit", pattern="adaptive") == 42
    assert value(found, "carebench_min_rtt_seconds", pattern="adaptive") == pytest.approx(0.05)
    assert value(found, "carebench_sample_rtt_seconds", pattern="adaptive") == pytest.approx(0.08)
    assert value(found, "carebench_rejected_at_limit_total", pattern="adaptive") == 7
    assert value(found, "carebench_rate_limit_tokens", pattern="adaptive") == 2.5
    assert value(found, "carebench_retries_total", backend="simulator") == 9
    assert value(found, "carebench_circuit_state", state="open") == 1
    assert value(found, "carebench_circuit_state", state="closed") == 0
    assert value(found, "carebench_circuit_transitions_total", transition="closed->open") == 1
    assert value(found, "carebench_circuit_fast_failures_total") == 4


def test_info_and_queue_depth_by_priority() -> None:
    """carebench_info carries pattern, backend and version (value 1); a priority queue's
    depth is one gauge per class."""
    pattern_stats: PatternStats = {
        **PATTERN_STATS,
        "queued_by_priority": {"critical": 1, "standard": 4, "batch": 2},
    }
    found = scrape(traffic(), pattern_stats=pattern_stats)
    info = [s for s in found if s.name == "carebench_info"]
    assert [s.labels for s in info] == [
        {"pattern": "workerpool", "backend": "simulator", "version": __version__}
    ]
    assert info[0].value == 1
    depths = {
        s.labels["priority"]: s.value for s in found if s.name == "carebench_queued_by_priority"
    }
    assert depths == {"critical": 1, "standard": 4, "batch": 2}
    assert not [s for s in scrape(traffic()) if s.name == "carebench_queued_by_priority"]


@pytest.mark.parametrize(("status", "up"), [("healthy", 1), ("degraded", 1), ("down", 0)])
def test_backend_up_from_health(status: str, up: int) -> None:
    """carebench_backend_up is 0 only while the backend's health says down."""
    health: BackendHealth = {
        "status": status,
        "backend": "simulator",
        "total_queries": 0,
        "total_errors": 0,
    }
    collector = CarebenchCollector(
        traffic(), lambda: PATTERN_STATS, lambda: BACKEND_STATS, lambda: health
    )
    text = render(build_registry(collector)).decode()
    found = [s for family in text_string_to_metric_families(text) for s in family.samples]
    assert value(found, "carebench_backend_up", backend="simulator") == up
