"""Properties of the concurrency-limit algorithms (AIMD, Gradient2, Vegas) under arbitrary
sample sequences: any round-trip times (zero, negative, huge, NaN, infinite), any number in
flight, any drops, with any sane configuration.

What each property protects:
* the limit is always a whole number within the algorithm's [min, max] (Vegas: [1, max]),
  and no sample makes an algorithm raise or its state non-finite (the adaptive pattern
  admits `limit` requests: a NaN or a runaway limit would disable the bound);
* a sample without a usable round-trip time (<= 0, NaN, infinite) is ignored by the
  latency-driven algorithms: the state is as if it had not been fed (one NaN must not
  poison a long-term average forever);
* AIMD backs off on every drop (and every RTT above its timeout) to
  max(min, floor(limit x backoff)), and otherwise grows by at most one; a drop never raises
  the Vegas limit;
* an app-limited sample (fewer than half the limit in flight, no drop) leaves the limit of
  Gradient2 and Vegas unchanged: too little traffic to learn from.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from carebench.limits.aimd import AimdLimit
from carebench.limits.base import LIMIT_ALGORITHMS, LimitAlgorithm, create_limit
from carebench.limits.gradient2 import Gradient2Limit
from carebench.limits.vegas import VegasLimit
from tests.property.bounds import BOUNDED

Sample = tuple[float, int, bool]

usable_rtts = st.one_of(st.floats(1e-6, 10.0), st.floats(1e-9, 1e4), st.sampled_from([0.05, 0.5]))
unusable_rtts = st.one_of(
    st.sampled_from([0.0, -0.0, -1.0, math.nan, math.inf, -math.inf]), st.floats(max_value=0.0)
)
samples = st.tuples(
    st.one_of(usable_rtts, usable_rtts, unusable_rtts), st.integers(0, 3000), st.booleans()
)
sample_runs = st.lists(samples, max_size=300)


def within(draw: st.DrawFn, low: int, high: int) -> int:
    """A value in [low, high], often one of the ends (where clamping matters)."""
    return draw(st.one_of(st.sampled_from([low, high]), st.integers(low, high)))


#: Smoothing: often the defaults (1.0 for Vegas, 0.2 for Gradient2), where a step moves the
#: whole limit; a small smoothing moves it by less than one and hides a change.
smoothings = st.one_of(st.sampled_from([1.0, 0.5, 0.2]), st.floats(0.01, 1.0))


@st.composite
def aimd_limits(draw: st.DrawFn) -> AimdLimit:
    low = draw(st.integers(1, 50))
    high = draw(st.integers(low, 500))
    return AimdLimit(
        initial=within(draw, low, high),
        min_limit=low,
        max_limit=high,
        backoff=draw(st.floats(0.1, 0.99)),
        timeout=draw(st.floats(0.001, 10.0)),
    )


@st.composite
def gradient2_limits(draw: st.DrawFn) -> Gradient2Limit:
    low = draw(st.integers(1, 50))
    high = draw(st.integers(low, 500))
    return Gradient2Limit(
        initial=within(draw, low, high),
        min_limit=low,
        max_limit=high,
        smoothing=draw(smoothings),
        rtt_tolerance=draw(st.floats(1.0, 3.0)),
        long_window=draw(st.integers(1, 1000)),
        queue_size=draw(st.integers(0, 10)),
    )


@st.composite
def vegas_limits(draw: st.DrawFn) -> VegasLimit:
    high = draw(st.integers(1, 2000))
    return VegasLimit(
        initial=within(draw, 1, high),
        max_limit=high,
        smoothing=draw(smoothings),
        probe_multiplier=draw(st.integers(1, 50)),
    )


any_limit = st.one_of(
    st.sampled_from(LIMIT_ALGORITHMS.names()).map(create_limit),
    aimd_limits(),
    gradient2_limits(),
    vegas_limits(),
)


def bounds(algorithm: LimitAlgorithm) -> tuple[int, int]:
    if isinstance(algorithm, VegasLimit):
        return 1, algorithm.max_limit
    assert isinstance(algorithm, AimdLimit | Gradient2Limit)
    return algorithm.min_limit, algorithm.max_limit


def numbers_in(stats: Any) -> list[float]:
    return [value for value in stats.values() if isinstance(value, int | float)]


@BOUNDED
@given(any_limit, sample_runs)
@example(VegasLimit(), [(0.05, 20, False), (math.nan, 20, False), (0.06, 20, False)])
@example(VegasLimit(), [(math.inf, 20, False), (math.inf, 20, False)])
@example(Gradient2Limit(), [(math.nan, 20, False), (1.0, 20, False)])
def test_limit_stays_whole_finite_and_within_bounds(
    algorithm: LimitAlgorithm, run: list[Sample]
) -> None:
    """After every sample the limit is an int within [min, max], the returned limit is the
    limit, and every figure in stats() is finite."""
    low, high = bounds(algorithm)
    for rtt, in_flight, dropped in run:
        returned = algorithm.on_sample(rtt, in_flight, dropped)
        assert returned == algorithm.limit
        assert isinstance(returned, int)
        assert low <= returned <= high
        stats = algorithm.stats()
        assert stats["limit"] == returned
        assert all(math.isfinite(value) for value in numbers_in(stats)), stats


latency_driven = st.one_of(
    gradient2_limits(), vegas_limits(), st.builds(Gradient2Limit), st.builds(VegasLimit)
)


@BOUNDED
@given(
    latency_driven,
    sample_runs,
    st.lists(
        st.tuples(st.integers(0, 300), unusable_rtts, st.integers(0, 3000), st.booleans()),
        max_size=10,
    ),
)
def test_samples_without_a_usable_rtt_are_ignored(
    algorithm: Gradient2Limit | VegasLimit,
    run: list[Sample],
    insertions: list[tuple[int, float, int, bool]],
) -> None:
    """Feeding the same run with unusable round-trip times slipped in anywhere leaves the
    algorithm exactly where the clean run does."""
    twin = copy.deepcopy(algorithm)
    mixed: list[Sample] = list(run)
    for position, rtt, in_flight, dropped in insertions:
        mixed.insert(min(position, len(mixed)), (rtt, in_flight, dropped))
    for rtt, in_flight, dropped in run:
        algorithm.on_sample(rtt, in_flight, dropped)
    for rtt, in_flight, dropped in mixed:
        twin.on_sample(rtt, in_flight, dropped)
    assert twin.stats() == algorithm.stats()
    assert twin.limit == algorithm.limit


@BOUNDED
@given(aimd_limits(), sample_runs)
def test_aimd_backs_off_on_drops_and_grows_by_one_at_most(
    algorithm: AimdLimit, run: list[Sample]
) -> None:
    """A drop or an RTT above the timeout gives max(min, floor(limit x backoff)), a strict
    decrease above the minimum; any other sample adds one at most, and only when at least
    half the limit was in use."""
    for rtt, in_flight, dropped in run:
        before = algorithm.limit
        after = algorithm.on_sample(rtt, in_flight, dropped)
        if dropped or rtt > algorithm.timeout:
            assert after == max(algorithm.min_limit, math.floor(before * algorithm.backoff))
            assert after < before or before == algorithm.min_limit
        elif in_flight * 2 >= before:
            assert after == min(algorithm.max_limit, before + 1)
        else:
            assert after == before


@BOUNDED
@given(st.one_of(vegas_limits(), st.builds(VegasLimit)), sample_runs)
def test_vegas_never_grows_on_a_drop(algorithm: VegasLimit, run: list[Sample]) -> None:
    """A dropped request never raises the Vegas limit (it backs off, or only re-learns its
    no-load RTT)."""
    for rtt, in_flight, dropped in run:
        before = algorithm.limit
        after = algorithm.on_sample(rtt, in_flight, dropped)
        if dropped:
            assert after <= before


@BOUNDED
@given(
    latency_driven,
    sample_runs,
    st.lists(st.tuples(usable_rtts, st.floats(0.0, 0.499)), min_size=1, max_size=20),
)
def test_app_limited_samples_leave_the_limit_alone(
    algorithm: Gradient2Limit | VegasLimit,
    warmup: list[Sample],
    quiet: list[tuple[float, float]],
) -> None:
    """With fewer than half the limit in flight and no drop, the limit does not move."""
    for rtt, in_flight, dropped in warmup:
        algorithm.on_sample(rtt, in_flight, dropped)
    for rtt, share in quiet:
        before = algorithm.limit
        in_flight = math.floor(before * share)
        if in_flight * 2 >= before:
            continue
        assert algorithm.on_sample(rtt, in_flight, False) == before


@pytest.mark.parametrize("name", LIMIT_ALGORITHMS.names())
def test_every_registered_algorithm_is_covered(name: str) -> None:
    """The properties above build every registered algorithm (a new one must be added)."""
    assert type(create_limit(name)) in (AimdLimit, Gradient2Limit, VegasLimit)
