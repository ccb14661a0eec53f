"""A calibration as a PNG: measured throughput and latency against the fitted USL curves
(matplotlib's Agg canvas, like report/plots.py; never opens a window)."""

from __future__ import annotations

import io
import math

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from carebench.calibrate.calibration import CalibrationDocument
from carebench.calibrate.measure import LevelResult
from carebench.calibrate.usl import UslFit

DPI = 80
MEASURED = "#1f77b4"
FITTED = "#d62728"


def _log_label(value: float, _position: object = None) -> str:
    """Plain numbers at 1, 2 and 5 of each decade (0.2, 0.5, 1, 2) instead of matplotlib's
    2x10^-1, so latency axes from 0.1 ms to seconds read alike."""
    if value <= 0:
        return ""
    mantissa = value / 10 ** math.floor(math.log10(value))
    return f"{value:g}" if round(mantissa, 6) in (1, 2, 5) else ""


def _measured(axes: Axes, levels: list[LevelResult], latency: bool) -> None:
    """Levels the fit used as filled dots, the others hollow."""
    for fitted, label in ((True, "measured"), (False, "measured, not fitted")):
        points = [
            (level["concurrency"], level["mean_ms"] if latency else level["throughput"])
            for level in levels
            if level["fitted"] is fitted and (level["mean_ms"] is not None or not latency)
        ]
        if points:
            xs, ys = zip(*points, strict=True)
            face = MEASURED if fitted else "none"
            axes.scatter(xs, ys, label=label, color=MEASURED, facecolors=face, zorder=3)


def _fitted(axes: Axes, fit: UslFit, top: float, latency: bool) -> None:
    grid = np.geomspace(1, max(top, 2), 200)
    values = [fit.latency(n) * 1000 if latency else fit.throughput(n) for n in grid]
    axes.plot(grid, values, color=FITTED, label="USL fit")
    peak = fit.peak_concurrency
    if math.isfinite(peak) and peak <= top:
        axes.axvline(peak, color=FITTED, linestyle=":", label=f"peak N* = {peak:.1f}")


def calibration_png(document: CalibrationDocument) -> bytes:
    """Throughput (left) and mean latency (right) against concurrency, on a log2 axis."""
    figure = Figure(figsize=(10, 4.2), layout="constrained")
    throughput, latency = figure.subplots(1, 2)
    levels = document["levels"]
    fit = None if document["fit"] is None else UslFit.from_document(document["fit"])
    top = float(max((level["concurrency"] for level in levels), default=1))
    for axes, is_latency in ((throughput, False), (latency, True)):
        _measured(axes, levels, is_latency)
        if fit is not None:
            _fitted(axes, fit, top, is_latency)
        axes.set_xscale("log", base=2)
        axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axes.set_xlabel("queries at once (N)")
        axes.grid(True, which="both", alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(loc="best")
    throughput.set_ylabel("queries/s")
    throughput.set_title(f"{document['backend']}: throughput X(N) = N / L(N)")
    latency.set_ylabel("mean latency (ms)")
    latency.set_yscale("log")
    latency.yaxis.set_major_formatter(FuncFormatter(_log_label))
    latency.yaxis.set_minor_formatter(FuncFormatter(_log_label))
    latency.set_title("mean latency L(N)")
    if fit is not None:
        figure.suptitle(
            "USL fit L(N) = L1 (1 + sigma (N-1) + kappa N (N-1)): "
            f"L1 = {fit.single_latency * 1000:.3g} ms, sigma = {fit.sigma:.3g}, "
            f"kappa = {fit.kappa:.3g}"
        )
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()
