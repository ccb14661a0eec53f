"""Charts of load-test results as PNG bytes (matplotlib's Agg canvas; never opens a window)."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any, Literal

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatter, NullFormatter, NullLocator
from matplotlib.transforms import blended_transform_factory

from carebench.loadgen.results import OUTCOMES, LoadTestResult, Outcome, TimelinePoint
from carebench.loadgen.sampler import ServerSample
from carebench.loadgen.sweep import SweepDocument
from carebench.report.sweep import (
    KNEE_FACTOR,
    goodput_peak,
    p99_knee,
    success_p99,
    sweep_series,
)

#: Resolution of every chart: readable in a browser, small enough to embed in HTML.
DPI = 80
#: Log axes cannot show zero; latencies below this (in ms) are drawn at this value.
LOG_FLOOR_MS = 0.01
SampleField = Literal["in_flight", "queued", "workers_busy", "db_active", "limit"]
#: Server-sample fields drawn beside the client's timeline, in drawing order.
SERVER_FIELDS: tuple[SampleField, ...] = (
    "in_flight",
    "queued",
    "workers_busy",
    "db_active",
    "limit",
)
Panels = tuple[Axes, Axes, Axes]
#: Shading of --faults windows on the timeline, by kind.
FAULT_COLOURS = {"outage": "#d62728", "slow": "#9467bd", "errors": "#ff7f0e"}
OUTCOME_COLOURS = {
    "success": "#4c9a2a",
    "rejected": "#f2a900",
    "backend_error": "#d62728",
    "client_error": "#9467bd",
    "timeout": "#8c564b",
    "connection_error": "#7f7f7f",
}


def _png(figure: Figure) -> bytes:
    """Render on an Agg canvas attached to this figure only (no pyplot global state)."""
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def _plain(text: Any) -> str:
    """Text shown as is: a `$` in a pattern name would otherwise start matplotlib's mathtext."""
    return str(text).replace("$", r"\$")


def _log_ms(value: Any) -> float:
    return max(float(value or 0.0), LOG_FLOOR_MS)


def _log_ms_axis(axes: Axes) -> None:
    """A log latency axis labelled 50, 100, 200 rather than 5x10^1, 10^2, 2x10^2."""
    axes.set_yscale("log")
    axes.yaxis.set_major_formatter(LogFormatter(labelOnlyBase=False))
    axes.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))


def _legend(axes: Axes, **options: Any) -> None:
    """A legend only when something is labelled (an empty legend is a matplotlib warning)."""
    if axes.get_legend_handles_labels()[0]:
        axes.legend(**options)


def _no_data(axes: Axes, message: str) -> None:
    axes.text(0.5, 0.5, message, ha="center", va="center", transform=axes.transAxes)
    axes.set_xticks([])
    axes.set_yticks([])


def latency_spectrum_png(results: Sequence[LoadTestResult]) -> bytes:
    """HdrHistogram-style percentile spectrum: latency (log ms) against 1/(1-p), per pattern."""
    figure = Figure(figsize=(8, 4.5), layout="constrained")
    axes = figure.add_subplot()
    farthest = 1e4
    for result in results:
        # The 100th percentile sits at infinity on this scale; the max is in the table.
        points = [p for p in result["latency_spectrum"] if p["percentile"] < 100.0]
        if not points:
            continue
        xs = [1.0 / (1.0 - p["percentile"] / 100.0) for p in points]
        axes.plot(xs, [_log_ms(p["value_ms"]) for p in points], label=_plain(result["pattern"]))
        farthest = max(farthest, xs[-1])
    if not axes.lines:
        _no_data(axes, "no latency spectrum recorded")
        return _png(figure)
    axes.set_xscale("log")
    _log_ms_axis(axes)
    _percentile_ticks(axes, farthest)
    axes.set_xlabel("percentile")
    axes.set_ylabel("latency (ms)")
    axes.set_title("Latency by percentile")
    axes.grid(True, which="both", alpha=0.3)
    _legend(axes, loc="lower right")
    return _png(figure)


def _percentile_ticks(axes: Axes, farthest: float) -> None:
    """Ticks at 50%, 90%, 99%, ... out to the farthest percentile drawn."""
    nines = max(4, math.ceil(math.log10(farthest)))
    positions = [2.0] + [10.0**k for k in range(1, nines + 1)]
    labels = ["50%"] + [
        f"{100.0 - 100.0 / 10.0**k:.{max(k - 2, 0)}f}%" for k in range(1, nines + 1)
    ]
    axes.set_xlim(1.0, positions[-1])
    axes.set_xticks(positions, labels)
    axes.xaxis.set_minor_locator(NullLocator())
    axes.xaxis.set_minor_formatter(NullFormatter())


def timeline_png(result: LoadTestResult) -> bytes:
    """One run over time: throughput and goodput, p50/p99, and the server's queue and in-flight."""
    figure = Figure(figsize=(8, 7), layout="constrained")
    rate, latency, server = figure.subplots(3, 1, sharex=True)
    timeline = result["timeline"]
    times = [point["t"] for point in timeline]
    rate.plot(times, [p["throughput"] for p in timeline], label="throughput", marker=".")
    rate.plot(times, [p["goodput"] for p in timeline], label="goodput", marker=".")
    rate.set_ylabel("req/s")
    rate.set_title(_plain(f"{result['pattern']} over time"))
    _legend(rate, loc="upper left", bbox_to_anchor=(1.01, 1))
    _latency_over_time(latency, timeline)
    _server_over_time(server, result["server_samples"])
    server.set_xlabel("seconds since the start of measurement")
    for axes in (rate, latency, server):
        axes.grid(True, alpha=0.3)
    _fault_spans((rate, latency, server), result)
    return _png(figure)


def _fault_spans(panels: Panels, result: LoadTestResult) -> None:
    """Shade each --faults window across the panels, labelled at the top of the first one
    (clipped to the run: a window may begin in the warm-up or outlast the run)."""
    timeline = result["timeline"]
    run_end = max([result["duration_seconds"], *(p["t"] for p in timeline)])
    for window in result.get("faults") or []:
        start = max(window["start"], 0.0)
        end = min(run_end if window["end"] is None else window["end"], run_end)
        if end <= start:
            continue
        colour = FAULT_COLOURS.get(window["kind"], "#7f7f7f")
        for axes in panels:
            axes.axvspan(start, end, color=colour, alpha=0.15, linewidth=0)
        top = blended_transform_factory(panels[0].transData, panels[0].transAxes)
        panels[0].text(
            start, 0.98, _plain(window["label"]), color=colour, fontsize=8, transform=top,
            ha="left", va="top",
        )  # fmt: skip


def _latency_over_time(axes: Axes, timeline: list[TimelinePoint]) -> None:
    # An interval with no completions has no percentiles; leave a gap instead of a fake zero.
    series = (
        ("p50", [(p["t"], p["p50_ms"]) for p in timeline]),
        ("p99", [(p["t"], p["p99_ms"]) for p in timeline]),
    )
    for label, values in series:
        points = [(t, _log_ms(ms)) for t, ms in values if ms is not None]
        if points:
            axes.plot(*zip(*points, strict=True), label=label, marker=".")
    if axes.lines:
        _log_ms_axis(axes)
    axes.set_ylabel("latency (ms)")
    _legend(axes, loc="upper left", bbox_to_anchor=(1.01, 1))


def _server_over_time(axes: Axes, samples: list[ServerSample]) -> None:
    for name in SERVER_FIELDS:
        points = [(s["t"], s[name]) for s in samples if name in s]
        if points:
            axes.plot(*zip(*points, strict=True), label=name.replace("_", " "))
    if not axes.lines:
        axes.text(0.5, 0.5, "no server samples", ha="center", va="center", transform=axes.transAxes)
    axes.set_ylabel("server (requests)")
    _legend(axes, loc="upper left", bbox_to_anchor=(1.01, 1))


def outcomes_png(results: Sequence[LoadTestResult]) -> bytes:
    """Stacked bars: the share of each outcome (success, rejected, errors) per pattern."""
    figure = Figure(figsize=(8, 1.6 + 0.6 * max(len(results), 1)), layout="constrained")
    axes = figure.add_subplot()
    names = [_plain(r["pattern"]) for r in results]
    left = [0.0] * len(results)
    for outcome in OUTCOMES:
        shares = [_share(r, outcome) for r in results]
        if not any(shares):
            continue
        axes.barh(
            names,
            shares,
            left=left,
            label=outcome.replace("_", " "),
            color=OUTCOME_COLOURS[outcome],
        )
        left = [a + b for a, b in zip(left, shares, strict=True)]
    axes.set_xlim(0, 100)
    axes.invert_yaxis()
    axes.set_xlabel("% of requests")
    axes.set_title("Outcomes")
    _legend(axes, loc="upper center", bbox_to_anchor=(0.5, -0.25), ncols=len(OUTCOMES))
    return _png(figure)


def _share(result: LoadTestResult, outcome: Outcome) -> float:
    total = result["total_requests"]
    return 100.0 * result["outcomes"][outcome] / total if total else 0.0


def sweep_png(sweep: SweepDocument) -> bytes:
    """Throughput (and goodput), p99 and rejection rate against offered load, per pattern,
    with each pattern's throughput peak and p99 knee marked."""
    figure = Figure(figsize=(15, 5), layout="constrained")
    rate, latency, rejected = figure.subplots(1, 3, sharex=True)
    panels = (rate, latency, rejected)
    for index, (name, points) in enumerate(sweep_series(sweep).items()):
        _sweep_curves(panels, name, points, f"C{index % 10}")
        _mark_peak_and_knee(panels, points, f"C{index % 10}", index)
    axis = sweep["axis"]
    _sweep_axes(panels, axis, [float(x) for x in sweep["levels"]])
    figure.suptitle(_plain(f"Sweep over {axis}"))
    handles, labels = latency.get_legend_handles_labels()
    if handles:
        figure.legend(handles, labels, loc="outside lower center", ncols=len(handles))
    return _png(figure)


def _sweep_curves(panels: Panels, name: str, points: list[LoadTestResult], colour: str) -> None:
    rate, latency, rejected = panels
    levels = [float(r["level"]) for r in points]
    rate.plot(levels, [r["goodput_per_second"] for r in points], color=colour, marker="o")
    p99s = [_log_ms(success_p99(r)) for r in points]
    latency.plot(levels, p99s, color=colour, marker="o", label=_plain(name))
    rejections = [r["rejection_rate_percent"] for r in points]
    rejected.plot(levels, rejections, color=colour, marker="o")


def _mark_peak_and_knee(
    panels: Panels, points: list[LoadTestResult], colour: str, slot: int
) -> None:
    """Mark the peak and the knee; their labels (which name the level) sit in a column, one slot
    per pattern, because patterns often peak or bend at the same level and labels would collide."""
    rate, latency, _ = panels
    peak = goodput_peak(points)
    if peak is not None:
        x, y = float(peak["level"]), peak["goodput_per_second"]
        rate.plot([x], [y], marker="*", markersize=16, color=colour, linestyle="none")
        where = (0.98, 0.04 + 0.07 * slot)
        _corner_label(rate, where, f"peak {y:.0f}/s at {x:g}", colour, ha="right", va="bottom")
    knee = p99_knee(points)
    if knee is not None:
        x, y = float(knee["level"]), _log_ms(success_p99(knee))
        latency.plot([x], [y], marker="X", markersize=12, color=colour, linestyle="none")
        where = (0.03, 0.96 - 0.07 * slot)
        _corner_label(latency, where, f"p99 knee at {x:g}", colour, ha="left", va="top")


def _corner_label(
    axes: Axes, where: tuple[float, float], text: str, colour: str, ha: str, va: str
) -> None:
    axes.text(*where, text, color=colour, fontsize=8, transform=axes.transAxes, ha=ha, va=va)


def _sweep_axes(panels: Panels, axis: str, levels: list[float]) -> None:
    _, latency, rejected = panels
    if latency.lines:
        _log_ms_axis(latency)
    # Levels like 1, 2, 4, ... 256 crowd together at the left of a linear axis.
    spread = bool(levels) and min(levels) > 0 and max(levels) / min(levels) >= 20
    titles = (
        "Goodput: successful responses per second (* = peak)",
        f"p99 of successes (X = knee: first level over {KNEE_FACTOR:g}x the lowest level's)",
        "Rejection rate",
    )
    for axes, ylabel, title in zip(
        panels, ("successful req/s", "p99 latency (ms)", "rejected (%)"), titles, strict=True
    ):
        if spread:
            axes.set_xscale("log")
        axes.set_xlabel(_plain(f"offered load ({axis})"))
        axes.set_ylabel(ylabel)
        axes.set_title(title, fontsize=10)
        axes.grid(True, which="both", alpha=0.3)
        if levels:
            axes.set_xticks(levels, [f"{x:g}" for x in levels])
            axes.xaxis.set_minor_formatter(NullFormatter())
    rejected.set_ylim(bottom=0)
