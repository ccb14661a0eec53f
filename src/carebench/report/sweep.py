"""Reading a sweep: where each pattern's throughput peaks and where its p99 climbs."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console

from carebench.loadgen.results import LoadTestResult
from carebench.loadgen.sweep import SweepDocument
from carebench.report.terminal import summary_table, winner_lines

#: The p99 "knee": the first level whose p99 exceeds this multiple of the lowest level's.
KNEE_FACTOR = 2.0


def sweep_series(sweep: SweepDocument) -> dict[str, list[LoadTestResult]]:
    """A sweep's results grouped by pattern (first-seen order), each sorted by level."""
    series: dict[str, list[LoadTestResult]] = {}
    for result in sweep["results"]:
        series.setdefault(result["pattern"], []).append(result)
    return {
        name: sorted(points, key=lambda r: float(r["level"])) for name, points in series.items()
    }


def success_p99(result: LoadTestResult) -> float:
    """The p99 of successful responses: fast rejections would flatter the p99 of all."""
    return float(result["success_latency_ms"]["p99"])


def goodput_peak(points: Sequence[LoadTestResult]) -> LoadTestResult | None:
    """The result with the most successful responses per second (the lowest level wins a
    tie). Raw throughput would crown rejection storms: shed requests are answered fast."""
    if not points:
        return None
    return max(points, key=lambda r: (r["goodput_per_second"], -float(r["level"])))


def p99_knee(points: Sequence[LoadTestResult]) -> LoadTestResult | None:
    """The first result whose p99 of successes exceeds KNEE_FACTOR x the lowest level's."""
    if not points:
        return None
    baseline = success_p99(points[0])
    if baseline <= 0:
        return None
    return next((r for r in points[1:] if success_p99(r) > KNEE_FACTOR * baseline), None)


def sweep_lines(sweep: SweepDocument) -> list[str]:
    """Per pattern: where its throughput peaked and where its p99 bent upwards."""
    unit = "clients" if sweep["axis"] == "concurrency" else "req/s offered"
    lines = []
    for name, points in sweep_series(sweep).items():
        peak, knee = goodput_peak(points), p99_knee(points)
        text = name
        if peak:
            text += (
                f": goodput peaks at {peak['level']:g} {unit} "
                f"({peak['goodput_per_second']:.1f} successful req/s)"
            )
        if knee:
            text += (
                f"; p99 of successes passes {KNEE_FACTOR:g}x its lowest-level value at "
                f"{knee['level']:g}"
            )
        else:
            text += f"; p99 of successes stays within {KNEE_FACTOR:g}x of its lowest-level value"
        lines.append(text)
    return lines


def print_sweep(sweep: SweepDocument, console: Console) -> None:
    """One comparison table (and winner) per level, then each pattern's peak and p99 knee."""
    axis = sweep["axis"]
    for level in sweep["levels"]:
        at_level = [r for r in sweep["results"] if r["level"] == level]
        if not at_level:
            continue
        table = summary_table(at_level)
        table.title = f"{axis} = {level:g}"
        console.print(table)
        for line in winner_lines(at_level):
            console.print(line, highlight=False)
        console.print()
    for line in sweep_lines(sweep):
        console.print(line, highlight=False)
    if sweep["interrupted"]:
        console.print("(interrupted: partial sweep)")
