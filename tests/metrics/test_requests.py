"""RequestMetrics: one count per request under its outcome, rates, and the JSON snapshot."""

from __future__ import annotations

import pytest

from carebench.metrics.requests import OUTCOMES, RequestMetrics


class FakeUptimeSource:
    """A monotonic seconds source the test moves by hand."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def filled_metrics(uptime_source: FakeUptimeSource | None = None) -> RequestMetrics:
    """6 success, 2 error, 1 rejected, 1 timeout: 10 requests."""
    metrics = RequestMetrics("workerpool", uptime_source=uptime_source or FakeUptimeSource())
    for _ in range(6):
        metrics.record("success", 0.06, 200)
    metrics.record("error", 0.07, 500)
    metrics.record("error", 0.08, 500)
    metrics.record("rejected", 0.0005, 503)
    metrics.record("timeout", 5.0, 504)
    return metrics


def test_total_is_the_sum_of_outcomes() -> None:
    """Each request counts once: total equals the sum of the per-outcome counts."""
    metrics = filled_metrics()

    assert metrics.total == 10
    assert sum(metrics.count(o) for o in OUTCOMES) == metrics.total
    assert metrics.count("success") == 6
    assert metrics.count("error") == 2
    assert metrics.count("rejected") == 1
    assert metrics.count("cancelled") == 0


def test_rates_are_percentages_of_total() -> None:
    """Error, rejection and timeout rates are percent of all requests."""
    snapshot = filled_metrics().snapshot()

    assert snapshot["error_rate_percent"] == 20.0
    assert snapshot["rejection_rate_percent"] == 10.0
    assert snapshot["timeout_rate_percent"] == 10.0


def test_rates_are_zero_without_requests() -> None:
    """With no requests the rates are 0 rather than a division error."""
    snapshot = RequestMetrics("naive", uptime_source=FakeUptimeSource()).snapshot()

    assert snapshot["total_requests"] == 0
    assert snapshot["error_rate_percent"] == 0.0
    assert snapshot["rejection_rate_percent"] == 0.0
    assert snapshot["requests_per_second"] == 0.0


def test_status_codes_are_counted() -> None:
    """Each response status is counted; the snapshot keys them as sorted strings."""
    metrics = filled_metrics()

    assert metrics.status_codes == {200: 6, 500: 2, 503: 1, 504: 1}
    assert list(metrics.snapshot()["status_codes"].items()) == [
        ("200", 6),
        ("500", 2),
        ("503", 1),
        ("504", 1),
    ]


def test_uptime_follows_the_injected_uptime_source() -> None:
    """uptime is the source's advance since creation, and drives requests_per_second."""
    uptime_source = FakeUptimeSource(100.0)
    metrics = filled_metrics(uptime_source)
    uptime_source.now += 4.0

    snapshot = metrics.snapshot()

    assert metrics.uptime() == 4.0
    assert snapshot["duration_seconds"] == 4.0
    assert snapshot["requests_per_second"] == 2.5


def test_snapshot_has_the_reference_fields() -> None:
    """The snapshot carries the reference's field names with consistent values."""
    uptime_source = FakeUptimeSource()
    metrics = filled_metrics(uptime_source)
    uptime_source.now += 1.0

    snapshot = metrics.snapshot()

    assert snapshot["pattern"] == "workerpool"
    assert snapshot["total_requests"] == 10
    assert snapshot["success_requests"] == 6
    assert snapshot["error_requests"] == 2
    assert snapshot["rejected_requests"] == 1
    assert snapshot["timeout_requests"] == 1
    for key in ("error_rate_percent", "rejection_rate_percent", "duration_seconds"):
        assert key in snapshot
    assert snapshot["requests_per_second"] == 10.0
    assert {"min", "mean", "median", "p95", "p99", "max"} <= set(snapshot["latency_ms"])


def test_snapshot_latency_covers_every_outcome() -> None:
    """Overall latency spans all outcomes; success latency only successes."""
    snapshot = filled_metrics().snapshot()

    assert snapshot["latency_ms"]["min"] == pytest.approx(0.5, rel=1e-3)
    assert snapshot["latency_ms"]["max"] == pytest.approx(5000, rel=1e-3)
    assert snapshot["success_latency_ms"]["min"] == pytest.approx(60, rel=1e-3)
    assert snapshot["success_latency_ms"]["max"] == pytest.approx(60, rel=1e-3)
    assert snapshot["rejection_latency_ms"]["max"] == pytest.approx(0.5, rel=1e-3)


def test_cumulative_buckets_count_values_up_to_each_bound() -> None:
    """Buckets count requests with latency <= the bound (edges included) and end at the total."""
    metrics = RequestMetrics("p")
    for seconds in (0.0007, 0.001, 0.003, 0.02, 0.2, 3.0, 60.0):
        metrics.record("success", seconds, 200)
    buckets = dict(metrics.cumulative_buckets("success"))
    assert buckets[0.001] == 2
    assert buckets[0.005] == 3
    assert buckets[0.025] == 4
    assert buckets[0.25] == 5
    assert buckets[5.0] == 6
    assert buckets[float("inf")] == 7
    assert [n for _, n in metrics.cumulative_buckets("error")] == [0] * len(buckets)
