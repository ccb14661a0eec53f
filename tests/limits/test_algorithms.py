"""The concurrency-limit algorithms, fed hand-made samples: growth, back-off, bounds, defaults."""

from __future__ import annotations

import pytest

from carebench.errors import ConfigError
from carebench.limits.aimd import AimdLimit
from carebench.limits.base import LIMIT_ALGORITHMS, LimitAlgorithm, create_limit
from carebench.limits.gradient2 import Gradient2Limit
from carebench.limits.vegas import VegasLimit

ALL = ["aimd", "gradient2", "vegas"]
#: Algorithms that read latency itself (AIMD only reacts to drops and to RTT above a timeout).
LATENCY_AWARE = ["gradient2", "vegas"]
#: Algorithms that back off on a dropped request (Gradient2, like Netflix's, ignores drops).
DROP_AWARE = ["aimd", "vegas"]
#: (min, max) each algorithm keeps its limit within, with its defaults.
BOUNDS = {"aimd": (20, 200), "gradient2": (20, 200), "vegas": (1, 1000)}

FLAT_RTT = 0.05
INFLATED_RTT = 0.5


def feed(
    algorithm: LimitAlgorithm,
    samples: int,
    rtt: float,
    *,
    in_flight: int | None = None,
    dropped: bool = False,
) -> list[int]:
    """Feed `samples` identical samples (in flight = the current limit unless given); return
    the limit after each one."""
    limits = []
    for _ in range(samples):
        used = algorithm.limit if in_flight is None else in_flight
        limits.append(algorithm.on_sample(rtt, used, dropped))
    return limits


def test_registry_lists_every_algorithm() -> None:
    """The registry offers exactly aimd, gradient2 and vegas, so the parametrisation is whole."""
    assert sorted(LIMIT_ALGORITHMS) == ALL


@pytest.mark.parametrize("name", ALL)
def test_create_limit_builds_the_named_algorithm(name: str) -> None:
    """create_limit returns a fresh algorithm of that name starting at 20, reported by stats."""
    algorithm = create_limit(name)
    assert algorithm.name == name
    assert algorithm.limit == 20
    assert algorithm.stats()["algorithm"] == name
    assert algorithm.stats()["limit"] == 20


def test_create_limit_rejects_an_unknown_name() -> None:
    """An unknown algorithm is a ConfigError naming the flag, the value and the valid names."""
    with pytest.raises(ConfigError, match="--limit-algorithm") as error:
        create_limit("bbr")
    message = str(error.value)
    assert "'bbr'" in message
    assert all(name in message for name in ALL)


@pytest.mark.parametrize("name", ALL)
def test_limit_rises_when_latency_is_flat_and_the_limit_is_used(name: str) -> None:
    """Constant RTT with the whole limit in flight grows the limit and never shrinks it."""
    algorithm = create_limit(name)
    limits = feed(algorithm, 50, FLAT_RTT)
    assert limits[-1] > 20
    assert limits == sorted(limits)


@pytest.mark.parametrize("name", LATENCY_AWARE)
def test_limit_falls_when_latency_inflates(name: str) -> None:
    """After a flat phase, RTT ten times higher with the limit in use shrinks the limit."""
    algorithm = create_limit(name)
    grown = feed(algorithm, 100, FLAT_RTT)[-1]
    assert grown > 20
    inflated = feed(algorithm, 20, INFLATED_RTT)
    assert inflated[-1] < grown
    assert inflated == sorted(inflated, reverse=True)


@pytest.mark.parametrize("name", DROP_AWARE)
def test_limit_falls_on_drops(name: str) -> None:
    """A dropped request lowers a grown limit, even at the usual RTT."""
    algorithm = create_limit(name)
    grown = feed(algorithm, 100, FLAT_RTT)[-1]
    after_drop = algorithm.on_sample(FLAT_RTT, grown, True)
    assert after_drop < grown


def test_aimd_backs_off_when_rtt_exceeds_its_timeout() -> None:
    """For AIMD, latency inflation means an RTT above `timeout`: it multiplies the limit by 0.9."""
    algorithm = AimdLimit()
    feed(algorithm, 30, FLAT_RTT)
    assert algorithm.limit == 50
    assert algorithm.on_sample(algorithm.timeout + 1.0, 50, False) == 45


def test_aimd_rtt_equal_to_timeout_is_not_a_drop() -> None:
    """An RTT of exactly `timeout` still counts as a success (the rule is rtt > timeout)."""
    algorithm = AimdLimit()
    assert algorithm.on_sample(algorithm.timeout, 20, False) == 21


@pytest.mark.parametrize("name", ALL)
def test_app_limited_samples_do_not_grow_the_limit(name: str) -> None:
    """With under half the limit in flight, flat latency teaches nothing: the limit stays put."""
    algorithm = create_limit(name)
    assert feed(algorithm, 200, FLAT_RTT, in_flight=2) == [20] * 200
    grown = feed(algorithm, 10, FLAT_RTT)[-1]
    assert 20 < grown < BOUNDS[name][1]
    assert feed(algorithm, 200, FLAT_RTT, in_flight=grown // 2 - 1) == [grown] * 200


@pytest.mark.parametrize("name", ALL)
def test_limit_never_exceeds_its_maximum(name: str) -> None:
    """However long latency stays flat under full use, the limit stops at its maximum."""
    _, maximum = BOUNDS[name]
    limits = feed(create_limit(name), 5_000, FLAT_RTT)
    assert max(limits) == maximum
    assert limits[-1] == maximum


@pytest.mark.parametrize("name", ALL)
def test_limit_never_falls_below_its_minimum(name: str) -> None:
    """Under sustained trouble (drops, or inflated RTT for Gradient2) the limit stops at its min."""
    minimum, _ = BOUNDS[name]
    algorithm = create_limit(name)
    feed(algorithm, 500, FLAT_RTT)
    if name == "gradient2":
        limits = feed(algorithm, 60, INFLATED_RTT)
    else:
        limits = feed(algorithm, 2_000, FLAT_RTT, dropped=True)
    assert min(limits) == minimum
    assert limits[-1] == minimum


@pytest.mark.parametrize("name", LATENCY_AWARE)
def test_non_positive_rtt_is_ignored(name: str) -> None:
    """A sample with RTT <= 0 (a clock glitch) leaves the limit unchanged."""
    algorithm = create_limit(name)
    grown = feed(algorithm, 50, FLAT_RTT)[-1]
    assert algorithm.on_sample(0.0, grown, False) == grown
    assert algorithm.on_sample(-1.0, grown, True) == grown


def test_aimd_defaults_and_rules() -> None:
    """AIMD starts at 20 within [20, 200]; +1 when in_flight x 2 >= limit, else unchanged."""
    algorithm = create_limit("aimd")
    assert isinstance(algorithm, AimdLimit)
    assert (algorithm.initial, algorithm.min_limit, algorithm.max_limit) == (20, 20, 200)
    assert algorithm.backoff == 0.9
    assert algorithm.on_sample(FLAT_RTT, 9, False) == 20
    assert algorithm.on_sample(FLAT_RTT, 10, False) == 21
    assert algorithm.on_sample(FLAT_RTT, 10, False) == 21
    assert algorithm.on_sample(FLAT_RTT, 11, False) == 22


def test_aimd_drop_multiplies_by_backoff_and_floors() -> None:
    """A drop multiplies the AIMD limit by 0.9, rounding down (100 -> 90 -> 81 -> 72)."""
    algorithm = AimdLimit(initial=100)
    drops = [algorithm.on_sample(FLAT_RTT, 100, True) for _ in range(3)]
    assert drops == [90, 81, 72]


def test_gradient2_defaults_match_the_library() -> None:
    """Gradient2 defaults: initial 20, min 20, max 200, smoothing 0.2, tolerance 1.5."""
    algorithm = create_limit("gradient2")
    assert isinstance(algorithm, Gradient2Limit)
    assert (algorithm.initial, algorithm.min_limit, algorithm.max_limit) == (20, 20, 200)
    assert algorithm.smoothing == 0.2
    assert algorithm.rtt_tolerance == 1.5
    assert (algorithm.long_window, algorithm.queue_size) == (600, 4)


def test_gradient2_grows_by_smoothed_queue_allowance() -> None:
    """With no inflation Gradient2 adds smoothing x queue_size (0.8) per sample: 20 -> 28 in 10."""
    algorithm = Gradient2Limit()
    assert feed(algorithm, 10, FLAT_RTT)[-1] == 28


def test_gradient2_standing_queue_does_not_become_its_baseline() -> None:
    """A standing queue (RTT 1.8x a learnt 100 ms, the limit in full use) for 600 requests
    does not grow the limit past what flat latency taught: the long RTT averages ~600 round
    trips (a sample with n in flight is 1/n of one), not 600 requests, so it stays near
    100 ms. Averaged per request it reached 169 ms, and the limit grew back to 200."""
    algorithm = Gradient2Limit()
    grown = feed(algorithm, 100, 0.1, in_flight=20)[-1]
    limits = feed(algorithm, 600, 0.18)
    assert max(limits) <= grown
    assert algorithm.stats()["long_rtt_ms"] < 110


def test_gradient2_baseline_still_follows_a_lasting_change() -> None:
    """~600 round trips of a slower backend (12,000 answers at 20 in flight) become the new
    normal: the long RTT has mostly caught up (Netflix: "adapt to long term changes")."""
    algorithm = Gradient2Limit()
    feed(algorithm, 100, 0.1, in_flight=20)
    feed(algorithm, 600 * 20, 0.18, in_flight=20)
    assert algorithm.stats()["long_rtt_ms"] > 160


def test_vegas_defaults_match_the_library() -> None:
    """Vegas defaults: initial 20, max 1000, smoothing 1.0."""
    algorithm = create_limit("vegas")
    assert isinstance(algorithm, VegasLimit)
    assert (algorithm.initial, algorithm.max_limit, algorithm.smoothing) == (20, 1000, 1.0)


def test_vegas_first_sample_only_learns_the_no_load_rtt() -> None:
    """Vegas's first sample (and any new minimum RTT) sets the baseline without moving the limit."""
    algorithm = VegasLimit()
    assert algorithm.on_sample(FLAT_RTT, 20, False) == 20
    assert algorithm.on_sample(FLAT_RTT / 2, 20, False) == 20
    assert algorithm.stats()["min_rtt_ms"] == pytest.approx(25.0)


def test_vegas_probe_relearns_a_stale_no_load_rtt() -> None:
    """Vegas periodically forgets its minimum RTT, so a lasting latency shift drives the limit
    down only until the next probe re-learns the baseline, after which it grows again."""
    algorithm = VegasLimit()
    feed(algorithm, 50, FLAT_RTT)
    shifted = feed(algorithm, 1_000, INFLATED_RTT)
    lowest = min(shifted)
    assert lowest < shifted[0]
    assert shifted[-1] > lowest


@pytest.mark.parametrize(
    ("queue_fraction", "expected"),
    [(0.03, 26), (0.12, 20), (0.33, 19)],
    ids=["queue-1-grows-by-beta", "queue-3-is-the-sweet-spot", "queue-7-shrinks-by-1"],
)
def test_vegas_thresholds_are_whole_numbers_like_the_library(
    queue_fraction: float, expected: int
) -> None:
    """Below a limit of 100 Vegas's log10 is 1 (the library's integer function), so at limit 20
    alpha = 3, beta = 6 and the steps are 1: a queue estimate of 1 adds beta, 3 holds and 7
    takes one away (fractional log10(20) = 1.3 would have grown at 3 and held at 7)."""
    algorithm = VegasLimit()
    algorithm.on_sample(FLAT_RTT, 20, False)
    rtt = FLAT_RTT / (1 - queue_fraction)
    assert algorithm.on_sample(rtt, 20, False) == expected


def test_vegas_step_is_two_from_a_limit_of_one_hundred() -> None:
    """At a limit of 100 the library's log10 becomes 2: a drop takes two requests away."""
    algorithm = VegasLimit(initial=100)
    algorithm.on_sample(FLAT_RTT, 100, False)
    assert algorithm.on_sample(FLAT_RTT, 100, True) == 98
    assert algorithm.on_sample(FLAT_RTT, 98, True) == 97
