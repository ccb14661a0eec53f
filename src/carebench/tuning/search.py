"""The searches behind `carebench tune` and `carebench capacity`, free of any I/O.

Each search calls a function that runs one trial (a fresh server and one load test, or a fake
in tests) and decides from what it returns what to try next. Both are bounded: the number of
runs they may make is known before the first one starts.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypedDict

#: Feasible candidates whose goodput is within this fraction of the best one's are a tie,
#: settled by the lower p99: on a goodput plateau the largest median is noise, the p99 is not.
GOODPUT_TIE = 0.02
#: pyperf's rule: a spread is wide when the standard deviation is >= 10 % of the mean.
WIDE_SPREAD_PERCENT = 10.0
#: The lowest rate the capacity search goes down to before it gives up.
MIN_RATE = 1.0


class TrialMetrics(TypedDict):
    """What one run measured, as the searches read it."""

    goodput_per_second: float
    #: The judged percentile of the successes' latency (ms); None when nothing succeeded.
    percentile_ms: float | None
    #: Requests refused or late (503/429, 504, client timeouts, connection errors), % of those
    #: sent: what the load did. The database's own errors (500) are apart: the simulated
    #: database fails a fixed share of queries (5 % by default) whatever the load.
    failed_percent: float
    backend_error_percent: float
    requests: int
    #: Open loop: whether the generator kept the arrival schedule; None for a closed loop.
    schedule_kept: bool | None


class Spread(TypedDict):
    """Several trials of one number: the median, the range and the relative deviation."""

    median: float
    min: float
    max: float
    #: Standard deviation as a % of the mean (0 for a single trial).
    stdev_percent: float


def spread(values: Sequence[float]) -> Spread:
    """The median, range and relative standard deviation of `values` (at least one)."""
    mean = statistics.fmean(values)
    deviation = statistics.stdev(values) if len(values) > 1 else 0.0
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "stdev_percent": round(100.0 * deviation / mean, 2) if mean else 0.0,
    }


class Candidate(TypedDict):
    """One value of the tuned setting and its trials."""

    value: float
    #: grid (the coarse pass) or refine (a midpoint next to the best so far).
    phase: Literal["grid", "refine"]
    trials: list[TrialMetrics]
    goodput: Spread
    #: p99 of successes over the trials that had any; None when no trial had one.
    percentile_ms: Spread | None
    meets_target: bool
    #: The goodput's spread is wide (stdev >= 10 % of the mean): trust the ranking less.
    wide_spread: bool


def summarise(
    value: float, phase: Literal["grid", "refine"], trials: list[TrialMetrics], target_ms: float
) -> Candidate:
    """A candidate from its trials: it meets the target when the median p99 is at or under it
    (a trial with no successes counts as missing it)."""
    latencies = [trial["percentile_ms"] for trial in trials]
    known = [ms for ms in latencies if ms is not None]
    goodput = spread([trial["goodput_per_second"] for trial in trials])
    judged = statistics.median(math.inf if ms is None else ms for ms in latencies)
    return {
        "value": value,
        "phase": phase,
        "trials": trials,
        "goodput": goodput,
        "percentile_ms": spread(known) if known else None,
        "meets_target": judged <= target_ms,
        "wide_spread": goodput["stdev_percent"] >= WIDE_SPREAD_PERCENT,
    }


@dataclass(frozen=True, slots=True)
class GridSpec:
    """Where the tune search looks: `points` values spread over low..high (geometrically when
    low > 0), then `refine_rounds` rounds of at most two midpoints next to the best so far."""

    low: float
    high: float
    points: int
    refine_rounds: int
    integer: bool

    @property
    def max_candidates(self) -> int:
        return len(self.grid()) + 2 * self.refine_rounds

    def grid(self) -> list[float]:
        """The coarse grid, ends included, without duplicates (integers are rounded)."""
        if self.points == 1:
            return [self._round(self.low)]
        steps = self.points - 1
        if self.low > 0:
            ratio = (self.high / self.low) ** (1.0 / steps)
            values = [self.low * ratio**i for i in range(steps)] + [self.high]
        else:
            values = [self.low + (self.high - self.low) * i / steps for i in range(self.points)]
        return sorted({self._round(value) for value in values})

    def between(self, a: float, b: float) -> float | None:
        """The midpoint of a and b (geometric when both are > 0), or None when there is no
        new value strictly between them."""
        middle = math.sqrt(a * b) if a > 0 and b > 0 else (a + b) / 2
        middle = self._round(middle)
        return middle if min(a, b) < middle < max(a, b) else None

    def _round(self, value: float) -> float:
        return float(round(value)) if self.integer else value


@dataclass(slots=True)
class TuneOutcome:
    """Every candidate tried (sorted by value) and the best one, if any met the target."""

    candidates: list[Candidate] = field(default_factory=list)
    best: Candidate | None = None


def best_candidate(candidates: Sequence[Candidate]) -> Candidate | None:
    """The candidate meeting the target with the most goodput; within GOODPUT_TIE of that
    goodput, the one with the lowest median p99 (then the smaller value)."""
    feasible = [c for c in candidates if c["meets_target"]]
    if not feasible:
        return None
    top = max(c["goodput"]["median"] for c in feasible)
    tied = [c for c in feasible if c["goodput"]["median"] >= (1 - GOODPUT_TIE) * top]
    return min(tied, key=lambda c: (_p99(c), c["value"]))


def _p99(candidate: Candidate) -> float:
    latency = candidate["percentile_ms"]
    return latency["median"] if latency else math.inf


def _focus(candidates: Sequence[Candidate]) -> Candidate:
    """Where to refine: the best candidate, or (none meets the target) the lowest p99."""
    return best_candidate(candidates) or min(candidates, key=lambda c: (_p99(c), c["value"]))


def search_setting(
    spec: GridSpec,
    run_trials: Callable[[float], list[TrialMetrics]],
    target_ms: float,
) -> TuneOutcome:
    """Try the grid, then refine around the best: at most `spec.max_candidates` candidates,
    each measured once by `run_trials` (which runs all its trials)."""
    outcome = TuneOutcome()

    def measure(value: float, phase: Literal["grid", "refine"]) -> None:
        outcome.candidates.append(summarise(value, phase, run_trials(value), target_ms))
        outcome.candidates.sort(key=lambda c: c["value"])

    for value in spec.grid():
        measure(value, "grid")
    for _ in range(spec.refine_rounds):
        new = _refinements(spec, outcome.candidates)
        if not new:
            break
        for value in new:
            measure(value, "refine")
    outcome.best = best_candidate(outcome.candidates)
    return outcome


def _refinements(spec: GridSpec, candidates: list[Candidate]) -> list[float]:
    """Midpoints between the focus and its neighbours on each side that were not tried yet."""
    values = [c["value"] for c in candidates]
    index = values.index(_focus(candidates)["value"])
    neighbours = [values[i] for i in (index - 1, index + 1) if 0 <= i < len(values)]
    found = (spec.between(values[index], other) for other in neighbours)
    return [value for value in found if value is not None and value not in values]


CapacityStatus = Literal["found", "at-least-max-rate", "below-min-rate"]
Phase = Literal["exponential", "bisection"]


@dataclass(frozen=True, slots=True)
class Slo:
    """What a rate must meet: a percentile of the successes' latency at or under a threshold,
    and at most `max_failed_percent` of requests refused or late (see TrialMetrics)."""

    percentile: str
    threshold_ms: float
    max_failed_percent: float

    def violation(self, trial: TrialMetrics) -> str | None:
        """Why `trial` misses the SLO, or None when it meets it."""
        if trial["requests"] == 0:
            return "no request completed"
        if trial["schedule_kept"] is False:
            return "the load generator fell behind its schedule"
        if trial["failed_percent"] > self.max_failed_percent:
            failed, most = trial["failed_percent"], self.max_failed_percent
            return f"{failed:.2f}% refused or late > {most:g}%"
        latency = trial["percentile_ms"]
        if latency is None:
            return "nothing succeeded"
        if latency > self.threshold_ms:
            return f"{self.percentile} {latency:.1f} ms > {self.threshold_ms:g} ms"
        return None


class Probe(TypedDict):
    """One rate tried by the capacity search."""

    rate: float
    #: exponential (doubling or halving to bracket the capacity) or bisection.
    phase: Phase
    passed: bool
    #: The trials run: all of them when it passed, up to the first failure otherwise.
    trials: list[TrialMetrics]
    #: Median of the trials' judged percentile (ms); None when none had successes.
    percentile_ms: float | None
    #: Why the failing trial missed the SLO; None when the rate passed.
    reason: str | None


def probe_rate(
    rate: float,
    phase: Phase,
    run_trial: Callable[[float], TrialMetrics],
    slo: Slo,
    trials: int,
) -> Probe:
    """Run up to `trials` trials at `rate`: it passes when every one meets the SLO, so the
    first that misses ends the probe (the remaining trials could not change the verdict)."""
    done: list[TrialMetrics] = []
    reason = None
    for _ in range(trials):
        done.append(run_trial(rate))
        reason = slo.violation(done[-1])
        if reason is not None:
            break
    known = [t["percentile_ms"] for t in done if t["percentile_ms"] is not None]
    return {
        "rate": rate,
        "phase": phase,
        "passed": reason is None,
        "trials": done,
        "percentile_ms": statistics.median(known) if known else None,
        "reason": reason,
    }


@dataclass(frozen=True, slots=True)
class RateSearch:
    """Exponential search from `start` (doubling up to `max_rate`, or halving down to
    MIN_RATE) until a passing and a failing rate bracket the capacity, then bisection until
    they are within `precision` (relative to the passing rate)."""

    start: float
    max_rate: float
    precision: float
    min_rate: float = MIN_RATE

    @property
    def max_probes(self) -> int:
        """The most rates the search can probe."""
        up = math.ceil(math.log2(self.max_rate / self.start)) if self.max_rate > self.start else 0
        down = (
            math.floor(math.log2(self.start / self.min_rate)) if self.start > self.min_rate else 0
        )
        return 1 + max(up, down) + math.ceil(math.log2(1.0 / self.precision))


@dataclass(slots=True)
class CapacitySearch:
    """The probes in the order run, and what they found."""

    probes: list[Probe] = field(default_factory=list)
    #: The highest rate that passed once the search stopped; None below MIN_RATE.
    capacity: float | None = None
    status: CapacityStatus = "found"


def search_capacity(search: RateSearch, probe: Callable[[float, Phase], Probe]) -> CapacitySearch:
    """The highest rate `probe` passes, to `search.precision`; `probe(rate, phase)` runs one
    probe (see probe_rate)."""
    found = CapacitySearch()

    def passes(rate: float, phase: Phase) -> bool:
        found.probes.append(probe(rate, phase))
        return found.probes[-1]["passed"]

    good, bad = _bracket(search, passes)
    if good is None:
        found.status = "below-min-rate"
        return found
    if bad is None:
        found.capacity, found.status = good, "at-least-max-rate"
        return found
    while (bad - good) / good > search.precision:
        middle = (good + bad) / 2
        if passes(middle, "bisection"):
            good = middle
        else:
            bad = middle
    found.capacity = good
    return found


def _bracket(
    search: RateSearch, passes: Callable[[float, Phase], bool]
) -> tuple[float | None, float | None]:
    """(highest passing, lowest failing) rate of the exponential phase; either may be None."""
    rate = search.start
    if passes(rate, "exponential"):
        while rate < search.max_rate:
            higher = min(rate * 2, search.max_rate)
            if not passes(higher, "exponential"):
                return rate, higher
            rate = higher
        return rate, None
    while rate / 2 >= search.min_rate:
        lower = rate / 2
        if passes(lower, "exponential"):
            return lower, rate
        rate = lower
    return None, rate
