"""Reading a sweep: where each pattern's throughput peaks and where its p99 climbs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table

#: The p99 "knee": the first level whose p99 exceeds this multiple of the lowest level's.
KNEE_FACTOR = 2.0


@dataclass(frozen=True, slots=True)
class SweepReading:
    pattern: str
    peak_level: float
    peak_throughput: float
    knee_level: float | None


def by_pattern(sweep: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Each pattern's results, in increasing level."""
    series: dict[str, list[dict[str, Any]]] = {}
    for result in sweep["results"]:
        series.setdefault(str(result["pattern"]), []).append(result)
    return {
        name: sorted(points, key=lambda r: float(r["level"])) for name, points in series.items()
    }


def read_series(pattern: str, points: list[dict[str, Any]]) -> SweepReading:
    """Throughput peak (level and value) and p99 knee of one pattern's series."""
    peak = max(points, key=lambda r: float(r["requests_per_second"]))
    base = float(points[0]["latency_ms"]["p99"])
    knee = next(
        (
            float(r["level"])
            for r in points[1:]
            if float(r["latency_ms"]["p99"]) > KNEE_FACTOR * base
        ),
        None,
    )
    return SweepReading(pattern, float(peak["level"]), float(peak["requests_per_second"]), knee)


def readings(sweep: dict[str, Any]) -> list[SweepReading]:
    return [read_series(name, points) for name, points in by_pattern(sweep).items()]


def print_sweep(sweep: dict[str, Any], console: Console) -> None:
    """A table per pattern, then one line per pattern on its peak and knee."""
    axis = sweep["axis"]
    for name, points in by_pattern(sweep).items():
        table = Table(title=f"{name}", title_justify="left")
        for column in (axis, "req/s", "goodput/s", "p50 ms", "p99 ms", "errors %", "rejected %"):
            table.add_column(column, justify="right")
        for r in points:
            lat = r["latency_ms"]
            table.add_row(
                f"{r['level']:g}",
                f"{r['requests_per_second']:.1f}",
                f"{r['goodput_per_second']:.1f}",
                f"{lat['median']:.1f}",
                f"{lat['p99']:.1f}",
                f"{r['error_rate_percent']:.2f}",
                f"{r['rejection_rate_percent']:.2f}",
            )
        console.print(table)
    unit = "clients" if axis == "concurrency" else "req/s offered"
    for reading in readings(sweep):
        knee = (
            f"p99 passes {KNEE_FACTOR:g}x its lowest-level value at {reading.knee_level:g} {unit}"
            if reading.knee_level is not None
            else f"p99 stays within {KNEE_FACTOR:g}x of its lowest-level value"
        )
        console.print(
            f"{reading.pattern}: throughput peaks at {reading.peak_level:g} {unit} "
            f"({reading.peak_throughput:.1f} req/s); {knee}",
            highlight=False,
        )
    if sweep.get("interrupted"):
        console.print("(interrupted: partial sweep)")
