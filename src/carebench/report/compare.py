"""Choosing the winner of a comparison: goodput first, the p99 of successes to break ties."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from carebench.loadgen.results import LoadTestResult

#: Goodputs within this fraction of the best count as a tie, decided by the p99.
TIE_FRACTION = 0.05


@dataclass(frozen=True, slots=True)
class Rival:
    """Another pattern, measured against the winner."""

    pattern: str
    #: The winner's goodput over this pattern's (None when this one had no successes).
    goodput_ratio: float | None
    #: This pattern's p99 of successes over the winner's (None when either is zero).
    p99_ratio: float | None


@dataclass(frozen=True, slots=True)
class Verdict:
    """Who won a comparison and why, as data: every report reads these fields."""

    winner: str
    #: The pattern that came second by the same rule.
    runner_up: str
    #: True when several goodputs were within TIE_FRACTION of the best and the lowest p99 of
    #: successes decided; False when the highest goodput decided alone.
    tie: bool
    #: The winner's successful responses per second and p99 of successes.
    goodput: float
    p99_ms: float
    rivals: tuple[Rival, ...]

    @property
    def reason(self) -> str:
        """Why the winner won, in words."""
        if self.tie:
            return (
                f"near-tie on goodput with {self.runner_up} (within {TIE_FRACTION:.0%}), won on "
                f"the lower p99 of successes ({self.p99_ms:.1f} ms)"
            )
        return f"highest goodput ({self.goodput:.1f} successful req/s)"


def _goodput(result: LoadTestResult) -> float:
    return float(result["goodput_per_second"])


def _p99(result: LoadTestResult) -> float:
    return float(result["success_latency_ms"]["p99"])


def choose_winner(results: Sequence[LoadTestResult]) -> Verdict | None:
    """The pattern with the most successful responses per second; near-ties go to the lower
    p99 of successes. None when fewer than two results or nothing succeeded."""
    if len(results) < 2 or max(_goodput(r) for r in results) <= 0:
        return None
    threshold = max(_goodput(r) for r in results) * (1 - TIE_FRACTION)
    # Those within the tie margin by p99 of successes, then everyone else by goodput.
    contenders = sorted((r for r in results if _goodput(r) >= threshold), key=_p99)
    rest = sorted((r for r in results if _goodput(r) < threshold), key=_goodput, reverse=True)
    ranking = contenders + rest
    winner = ranking[0]
    return Verdict(
        winner=winner["pattern"],
        runner_up=ranking[1]["pattern"],
        tie=len(contenders) > 1,
        goodput=_goodput(winner),
        p99_ms=_p99(winner),
        rivals=tuple(_rival(winner, other) for other in results if other is not winner),
    )


def _rival(winner: LoadTestResult, other: LoadTestResult) -> Rival:
    goodput, p99 = _goodput(other), _p99(other)
    return Rival(
        pattern=other["pattern"],
        goodput_ratio=round(_goodput(winner) / goodput, 2) if goodput else None,
        p99_ratio=round(p99 / _p99(winner), 2) if _p99(winner) and p99 else None,
    )
