"""The tune and capacity searches, driven by fake trials: which values and rates they try,
what they choose, and that they stay within the bounds they announce."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from carebench.tuning.search import (
    Candidate,
    CapacitySearch,
    GridSpec,
    Phase,
    Probe,
    RateSearch,
    Slo,
    TrialMetrics,
    best_candidate,
    probe_rate,
    search_capacity,
    search_setting,
    summarise,
)

SLO = Slo("p99", 250.0, 1.0)


def trial(p99: float | None, goodput: float = 100.0, failed: float = 0.0) -> TrialMetrics:
    return {
        "goodput_per_second": goodput,
        "percentile_ms": p99,
        "failed_percent": failed,
        "backend_error_percent": 5.0,
        "requests": 1000,
        "schedule_kept": True,
    }


def step_system(capacity: float) -> tuple[list[float], Callable[[float], TrialMetrics]]:
    """A fake server that meets the SLO at rates up to `capacity` and misses it above; the
    list records every trial's rate."""
    rates: list[float] = []

    def run(rate: float) -> TrialMetrics:
        rates.append(rate)
        return trial(100.0 if rate <= capacity else 400.0)

    return rates, run


def capacity_of(
    capacity: float, search: RateSearch, trials: int = 1
) -> tuple[CapacitySearch, list[float]]:
    rates, run = step_system(capacity)

    def probe(rate: float, phase: Phase) -> Probe:
        return probe_rate(rate, phase, run, SLO, trials)

    return search_capacity(search, probe), rates


def test_capacity_doubles_then_bisects_in_a_known_order() -> None:
    """From 50/s with the capacity at 300/s: 50, 100, 200 pass, 400 fails, then bisection
    (300 passes; 350, 325, 312.5 fail) stops once 312.5 is within 5 % of 300."""
    found, rates = capacity_of(300.0, RateSearch(50.0, 10_000.0, 0.05))

    assert rates == [50.0, 100.0, 200.0, 400.0, 300.0, 350.0, 325.0, 312.5]
    assert found.capacity == 300.0
    assert found.status == "found"
    phases = [p["phase"] for p in found.probes]
    assert phases == ["exponential"] * 4 + ["bisection"] * 4


@pytest.mark.parametrize(
    "true_capacity", [2.0, 7.0, 49.0, 50.0, 73.0, 99.9, 437.0, 5123.0, 9_999.0]
)
@pytest.mark.parametrize("precision", [0.01, 0.05, 0.2])
def test_capacity_is_within_precision_and_probes_within_the_bound(true_capacity, precision) -> None:
    """The capacity found passes, a failing rate lies within `precision` above it, and the
    search never probes more rates than the bound it states up front."""
    search = RateSearch(50.0, 10_000.0, precision)
    found, rates = capacity_of(true_capacity, search)

    capacity = found.capacity
    assert capacity is not None and capacity <= true_capacity
    failing = min(rate for rate in rates if rate > true_capacity)
    assert (failing - capacity) / capacity <= precision
    assert len(rates) <= search.max_probes


def test_capacity_below_the_start_rate_halves_down_first() -> None:
    """When the first rate fails the search halves it until one passes, then bisects."""
    found, rates = capacity_of(30.0, RateSearch(50.0, 10_000.0, 0.05))

    assert rates[:2] == [50.0, 25.0]
    assert found.capacity is not None
    assert 30.0 / 1.05 <= found.capacity <= 30.0


def test_capacity_below_the_minimum_rate_is_none() -> None:
    """A system that fails even at 1/s has no capacity; the search stops at the minimum."""
    search = RateSearch(50.0, 10_000.0, 0.05)
    found, rates = capacity_of(0.5, search)

    assert found.capacity is None
    assert found.status == "below-min-rate"
    assert min(rates) >= search.min_rate
    assert len(rates) <= search.max_probes


def test_capacity_above_the_maximum_rate_is_a_lower_bound() -> None:
    """When every rate up to --max-rate passes, the capacity is at least the maximum."""
    found, rates = capacity_of(math.inf, RateSearch(50.0, 1000.0, 0.05))

    assert rates == [50.0, 100.0, 200.0, 400.0, 800.0, 1000.0]
    assert found.capacity == 1000.0
    assert found.status == "at-least-max-rate"


def test_a_probe_passes_only_when_every_trial_passes_and_stops_at_the_first_failure() -> None:
    """Three trials: pass, miss, (pass): the probe fails after two, with the reason."""
    outcomes = iter([trial(100.0), trial(300.0), trial(100.0)])
    calls: list[float] = []

    def run(rate: float) -> TrialMetrics:
        calls.append(rate)
        return next(outcomes)

    probe = probe_rate(80.0, "bisection", run, SLO, 3)

    assert calls == [80.0, 80.0]
    assert probe["passed"] is False
    assert probe["reason"] == "p99 300.0 ms > 250 ms"
    assert probe["percentile_ms"] == 200.0


def test_a_probe_whose_trials_all_pass_runs_them_all() -> None:
    """A passing rate has all its trials, for the spread and the p99 at capacity."""
    probe = probe_rate(80.0, "exponential", lambda rate: trial(120.0), SLO, 4)

    assert probe["passed"] is True
    assert len(probe["trials"]) == 4
    assert probe["reason"] is None


@pytest.mark.parametrize(
    ("metrics", "reason"),
    [
        (trial(100.0, failed=1.5), "1.50% refused or late > 1%"),
        ({**trial(100.0), "schedule_kept": False}, "fell behind its schedule"),
        (trial(None), "nothing succeeded"),
        ({**trial(None), "requests": 0}, "no request completed"),
        (trial(250.0, failed=1.0), None),
    ],
)
def test_slo_names_what_a_trial_missed(metrics, reason) -> None:
    """Failures over the budget, a generator that fell behind and no successes all miss;
    exactly at the thresholds passes."""
    verdict = SLO.violation(metrics)

    if reason is None:
        assert verdict is None
    else:
        assert reason in (verdict or "")


def test_geometric_grid_with_whole_numbers() -> None:
    """5..100 in 6 points: a constant ratio, rounded for a whole-number setting."""
    assert GridSpec(5, 100, 6, 0, True).grid() == [5.0, 9.0, 17.0, 30.0, 55.0, 100.0]


def test_grid_of_a_narrow_whole_range_has_no_duplicates() -> None:
    """Rounding cannot make the search run the same value twice."""
    assert GridSpec(1, 3, 6, 2, True).grid() == [1.0, 2.0, 3.0]


def test_grid_from_zero_is_linear() -> None:
    """A range from 0 (queue size) cannot be geometric: it is spread evenly."""
    assert GridSpec(0, 100, 5, 0, True).grid() == [0.0, 25.0, 50.0, 75.0, 100.0]


def plateau(value: float) -> list[TrialMetrics]:
    """Goodput grows with the setting until 40, p99 with it throughout (target 250 -> <= 25)."""
    return [trial(100.0 + 6.0 * value, goodput=5.0 * min(value, 40.0)) for _ in range(2)]


def test_tune_refines_around_the_best_grid_value() -> None:
    """Grid 5..100: 17 is the best that meets 250 ms; round one adds 12 and 23 (23 better),
    round two 20 and 26 (26 misses): the best is 23, after 10 candidates."""
    spec = GridSpec(5, 100, 6, 2, True)
    tried: list[float] = []

    def run(value: float) -> list[TrialMetrics]:
        tried.append(value)
        return plateau(value)

    outcome = search_setting(spec, run, 250.0)

    assert tried == [5.0, 9.0, 17.0, 30.0, 55.0, 100.0, 12.0, 23.0, 20.0, 26.0]
    assert outcome.best is not None and outcome.best["value"] == 23.0
    assert len(tried) <= spec.max_candidates
    assert [c["value"] for c in outcome.candidates] == sorted(tried)
    assert {c["phase"] for c in outcome.candidates if c["value"] in (12, 20, 23, 26)} == {"refine"}


def test_tune_with_no_feasible_value_has_no_best_and_refines_near_the_lowest_p99() -> None:
    """No candidate meets the target: no best, and refinement looks next to the lowest p99."""
    spec = GridSpec(10, 80, 4, 1, True)
    tried: list[float] = []

    def run(value: float) -> list[TrialMetrics]:
        tried.append(value)
        return [trial(1000.0 + value)]

    outcome = search_setting(spec, run, 250.0)

    assert outcome.best is None
    assert tried == [10.0, 20.0, 40.0, 80.0, 14.0]


def test_tune_stops_refining_when_no_value_is_left_between() -> None:
    """On 1..3 every value is on the grid: no refinement run happens."""
    tried: list[float] = []

    def run(value: float) -> list[TrialMetrics]:
        tried.append(value)
        return plateau(value)

    search_setting(GridSpec(1, 3, 6, 3, True), run, 250.0)

    assert tried == [1.0, 2.0, 3.0]


def candidate(value: float, goodput: float, p99: float) -> Candidate:
    return summarise(value, "grid", [trial(p99, goodput=goodput)], 250.0)


def test_near_tie_in_goodput_goes_to_the_lower_p99() -> None:
    """Within 2 % of the best goodput the lower p99 wins; beyond it, goodput does."""
    close = [candidate(20, 100.0, 150.0), candidate(40, 101.0, 240.0)]
    apart = [candidate(20, 100.0, 150.0), candidate(40, 110.0, 240.0)]

    assert best_candidate(close)["value"] == 20  # type: ignore[index]
    assert best_candidate(apart)["value"] == 40  # type: ignore[index]


def test_a_candidate_meets_the_target_by_its_median_trial() -> None:
    """A trial without successes counts as missing the target."""
    assert summarise(1, "grid", [trial(100.0), trial(None), trial(120.0)], 150.0)["meets_target"]
    assert summarise(1, "grid", [trial(150.0)], 150.0)["meets_target"]  # at the target: meets
    assert not summarise(1, "grid", [trial(None), trial(None), trial(100.0)], 150.0)["meets_target"]


def test_spread_of_goodput_is_reported_and_a_wide_one_flagged() -> None:
    """Median, range and stdev as % of the mean; >= 10 % is flagged as pyperf does."""
    steady = summarise(1, "grid", [trial(100.0, goodput=g) for g in (100, 101, 99)], 250.0)
    noisy = summarise(1, "grid", [trial(100.0, goodput=g) for g in (60, 100, 140)], 250.0)

    assert steady["goodput"] == {"median": 100, "min": 99, "max": 101, "stdev_percent": 1.0}
    assert not steady["wide_spread"]
    assert noisy["wide_spread"]
    assert noisy["goodput"]["stdev_percent"] == 40.0
