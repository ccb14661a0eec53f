"""The shedder's limit tuner: grows on flat latency, shrinks on inflation, stays bounded."""

from __future__ import annotations

import random

import pytest

from carebench.limits.latency_tuner import LatencyTuner, percentile


def window(tuner: LatencyTuner, latency: float, saturated: bool = True) -> int:
    """One full window of identical samples; returns the limit after it."""
    for _ in range(tuner.min_samples):
        tuner.record(latency)
    return tuner.update(saturated)


def test_percentile_is_nearest_rank() -> None:
    """p90 of 1..10 is 9, of one sample that sample, of none 0."""
    assert percentile([float(i) for i in range(10, 0, -1)], 0.9) == 9.0
    assert percentile([0.25], 0.9) == 0.25
    assert percentile([], 0.9) == 0.0


def test_limit_grows_while_latency_stays_flat_and_the_limit_is_used() -> None:
    """Flat latency with the limit reached: +5 % (at least 1) per window."""
    tuner = LatencyTuner(initial=20, max_limit=1000)
    limits = [window(tuner, 0.05) for _ in range(5)]
    assert limits == [21, 22, 23, 24, 25]
    for _ in range(40):
        window(tuner, 0.05)
    assert tuner.limit > 60


def test_limit_does_not_grow_when_the_limit_is_not_reached() -> None:
    """App-limited windows (no request found the limit in use) prove nothing: no growth."""
    tuner = LatencyTuner(initial=20)
    for _ in range(10):
        window(tuner, 0.05, saturated=False)
    assert tuner.limit == 20


def test_limit_shrinks_when_latency_inflates() -> None:
    """After a flat baseline, 3x the latency shrinks the limit, by at most 10 % per window."""
    tuner = LatencyTuner(initial=40)
    for _ in range(3):
        window(tuner, 0.05)
    grown = tuner.limit
    after = window(tuner, 0.15)
    assert int(0.9 * grown) <= after < grown
    for _ in range(10):
        window(tuner, 0.15)
    assert int(0.9**10 * after) <= tuner.limit < after / 2


def test_small_inflation_within_tolerance_keeps_growing() -> None:
    """Latency within the tolerance of the baseline still counts as flat."""
    tuner = LatencyTuner(initial=20)
    assert window(tuner, 0.100) == 21
    assert tuner.tolerance() > 0.15
    assert window(tuner, 0.115) == 22


def test_tolerance_is_wider_at_low_limits() -> None:
    """One more request in flight matters more at a low limit (Cinnamon's tuner)."""
    assert LatencyTuner(initial=4).tolerance() > LatencyTuner(initial=100).tolerance()


def test_limit_stays_within_its_bounds_whatever_the_latency() -> None:
    """Random latencies, saturation and window sizes never take the limit out of [min, max]."""
    rng = random.Random(13)
    tuner = LatencyTuner(initial=10, min_limit=3, max_limit=30)
    seen = {window(tuner, 0.05) for _ in range(100)}
    seen |= {window(tuner, 5.0) for _ in range(20)}
    for _ in range(2000):
        for _ in range(rng.randint(0, 3 * tuner.min_samples)):
            tuner.record(rng.choice([0.001, 0.05, 0.2, 2.0]) * rng.random())
        seen.add(tuner.update(rng.random() < 0.7))
    assert min(seen) >= 3
    assert max(seen) <= 30
    assert {3, 30} <= seen, "the walk should have reached both bounds"


def test_a_slower_backend_is_relearned_once_the_floor_cannot_help() -> None:
    """A backend that turned 10x slower for good takes the limit to its floor; after 20 more
    windows there, still over the tolerance, the baseline restarts at the new latency and the
    limit grows again."""
    tuner = LatencyTuner(initial=20, min_limit=2)
    window(tuner, 0.05)
    at_floor = 0
    while tuner.baseline == 0.05:
        window(tuner, 0.5)
        at_floor += tuner.limit == 2
        assert at_floor <= tuner.relearn_after + 5
    assert at_floor >= tuner.relearn_after
    assert tuner.baseline == pytest.approx(0.5)
    assert [window(tuner, 0.5) for _ in range(3)] == [3, 4, 5]


def test_the_baseline_does_not_drift_up_with_the_limit() -> None:
    """Latency creeping up with the limit is measured against the best window of the long
    history, not the latest ones: the limit stops growing instead of chasing it."""
    tuner = LatencyTuner(initial=10, max_limit=1000)
    for _ in range(200):
        window(tuner, 0.1 * (1 + 0.05 * tuner.limit))
    assert tuner.baseline == pytest.approx(0.15)
    assert 10 < tuner.limit <= 20


def test_slow_traffic_closes_a_window_after_ten_updates() -> None:
    """With fewer than min_samples per window, ten updates with at least a fifth of them do."""
    tuner = LatencyTuner(initial=20)
    for _ in range(tuner.min_samples // 5):
        tuner.record(0.05)
    assert [tuner.update(True) for _ in range(10)] == [20] * 9 + [21]
    tuner.record(0.05)
    assert [tuner.update(True) for _ in range(10)] == [21] * 10


def test_too_few_samples_do_not_close_a_window() -> None:
    """Below min_samples nothing changes; the samples carry over to the next update."""
    tuner = LatencyTuner(initial=20)
    for _ in range(tuner.min_samples - 1):
        tuner.record(0.05)
    assert tuner.update(True) == 20
    tuner.record(0.05)
    assert tuner.update(True) == 21


@pytest.mark.parametrize(("low", "high"), [(0, 10), (5, 4)])
def test_bad_bounds_are_refused(low: int, high: int) -> None:
    """min must be >= 1 and <= max."""
    with pytest.raises(ValueError, match="min"):
        LatencyTuner(min_limit=low, max_limit=high)
