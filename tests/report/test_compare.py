"""The winner: most goodput; goodputs within 5 % are a tie decided by the p99 of successes."""

from __future__ import annotations

import pytest

from carebench.loadgen.results import LoadTestResult
from carebench.report.compare import Rival, choose_winner
from tests.report.conftest import make_result


def test_highest_goodput_wins_outright() -> None:
    """Clearly more goodput wins with tie False; the runner-up is next by goodput."""
    verdict = choose_winner(
        [
            make_result("slow", rps=50.0, p99=10.0),
            make_result("fast", rps=100.0, p99=90.0),
            make_result("middle", rps=80.0, p99=20.0),
        ]
    )
    assert verdict is not None
    assert (verdict.winner, verdict.runner_up, verdict.tie) == ("fast", "middle", False)
    assert (verdict.goodput, verdict.p99_ms) == (100.0, 90.0)
    assert verdict.reason == "highest goodput (100.0 successful req/s)"


def test_near_tie_goes_to_the_lower_p99() -> None:
    """Goodputs within 5 % of the best tie; the lowest p99 of successes wins, tie True."""
    verdict = choose_winner(
        [
            make_result("best-goodput", rps=100.0, p99=300.0),
            make_result("steady", rps=96.0, p99=120.0),
            make_result("far-behind", rps=50.0, p99=10.0),
        ]
    )
    assert verdict is not None
    assert (verdict.winner, verdict.runner_up, verdict.tie) == ("steady", "best-goodput", True)
    assert verdict.reason == (
        "near-tie on goodput with best-goodput (within 5%), won on the lower p99 of successes "
        "(120.0 ms)"
    )


def test_rivals_carry_the_ratios() -> None:
    """Each other pattern: winner goodput / its goodput, and its p99 / the winner's p99."""
    verdict = choose_winner(
        [make_result("a", rps=100.0, p99=50.0), make_result("b", rps=50.0, p99=100.0)]
    )
    assert verdict is not None
    assert verdict.rivals == (Rival("b", goodput_ratio=2.0, p99_ratio=2.0),)


def test_a_pattern_without_successes_has_no_goodput_ratio() -> None:
    """A rival with zero goodput gets None instead of a division by zero."""
    nothing = make_result("none", outcomes={"success": 0, "rejected": 200})
    verdict = choose_winner([make_result("a"), nothing])
    assert verdict is not None
    assert verdict.rivals[0].goodput_ratio is None


@pytest.mark.parametrize(
    "results",
    [[make_result("alone")], [make_result("a", outcomes={"success": 0, "backend_error": 200})] * 2],
    ids=["one result", "nothing succeeded"],
)
def test_no_verdict_without_a_contest(results: list[LoadTestResult]) -> None:
    """No winner for a single result, or when no pattern served anything."""
    assert choose_winner(results) is None
