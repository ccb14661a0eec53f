"""Choosing the winner of a comparison: goodput first, the p99 of successes to break ties."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Goodputs within this fraction of the best count as a tie, decided by the p99.
TIE_FRACTION = 0.05


@dataclass(frozen=True, slots=True)
class Verdict:
    winner: str
    reason: str
    ratios: dict[str, dict[str, float | None]]


def _goodput(result: dict[str, Any]) -> float:
    return float(result.get("goodput_per_second", 0.0))


def _p99(result: dict[str, Any]) -> float:
    return float(result["success_latency_ms"]["p99"])


def choose_winner(results: list[dict[str, Any]]) -> Verdict | None:
    """The pattern with the most successful responses per second; near-ties go to the lower
    p99 of successes. None when fewer than two results or nothing succeeded."""
    if len(results) < 2 or max(_goodput(r) for r in results) <= 0:
        return None
    best_goodput = max(_goodput(r) for r in results)
    contenders = [r for r in results if _goodput(r) >= best_goodput * (1 - TIE_FRACTION)]
    winner = min(contenders, key=_p99) if len(contenders) > 1 else contenders[0]
    if len(contenders) > 1:
        reason = (
            f"goodput within {TIE_FRACTION:.0%} of the best; lowest p99 of successes "
            f"({_p99(winner):.1f} ms)"
        )
    else:
        reason = f"highest goodput ({_goodput(winner):.1f} successful req/s)"
    return Verdict(str(winner["pattern"]), reason, _ratios(winner, results))


def _ratios(
    winner: dict[str, Any], results: list[dict[str, Any]]
) -> dict[str, dict[str, float | None]]:
    """For every other pattern: winner goodput / its goodput, its p99 / winner p99."""
    ratios: dict[str, dict[str, float | None]] = {}
    for other in results:
        if other is winner:
            continue
        goodput, p99 = _goodput(other), _p99(other)
        ratios[str(other["pattern"])] = {
            "goodput": round(_goodput(winner) / goodput, 2) if goodput else None,
            "p99": round(p99 / _p99(winner), 2) if _p99(winner) and p99 else None,
        }
    return ratios
