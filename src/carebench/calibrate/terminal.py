"""A calibration in the terminal: the levels as measured and as fitted, the peak, the flags."""

from __future__ import annotations

import shlex

from rich.console import Console
from rich.table import Table

from carebench.calibrate.calibration import CalibrationDocument
from carebench.calibrate.measure import LevelResult
from carebench.calibrate.usl import FitDocument, UslFit


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if value < 10 else f"{value:.1f}"


def level_table(document: CalibrationDocument) -> Table:
    """One row per level: measured throughput and latency beside the fit's prediction."""
    pool = document["pool_size"]
    title = f"Calibration of {document['backend']}" + (f" (pool of {pool})" if pool else "")
    table = Table(title=title, title_justify="left")
    for header in ("N", "queries/s", "mean ms", "p50 ms", "p99 ms", "errors"):
        table.add_column(header, justify="right")
    table.add_column("fit queries/s", justify="right")
    table.add_column("fit mean ms", justify="right")
    fit = None if document["fit"] is None else UslFit.from_document(document["fit"])
    for level in document["levels"]:
        table.add_row(*_row(level, fit))
    return table


def _row(level: LevelResult, fit: UslFit | None) -> list[str]:
    n = level["concurrency"]
    predicted = ["-", "-"]
    if fit is not None and level["fitted"]:
        predicted = [f"{fit.throughput(n):.1f}", _ms(fit.latency(n) * 1000)]
    return [
        str(n),
        f"{level['throughput']:.1f}",
        _ms(level["mean_ms"]),
        _ms(level["p50_ms"]),
        _ms(level["p99_ms"]),
        str(level["errors"]),
        *predicted,
    ]


def fit_lines(fit: FitDocument) -> list[str]:
    """The coefficients, how well they fit, and where throughput peaks."""
    r_squared = "n/a" if fit["r_squared"] is None else f"{fit['r_squared']:.4f}"
    levels = fit["levels"]
    lines = [
        f"USL fit over N = {levels[0]}..{levels[-1]} ({len(levels)} levels, least squares on "
        "relative latency error):",
        f"  single query L1 = {fit['single_query_ms']:.4g} ms, contention sigma = "
        f"{fit['sigma']:.4g}, coherency kappa = {fit['kappa']:.4g}",
        f"  R^2 of latency {r_squared}; predicted throughput off by "
        f"{fit['throughput_error']:.1%} on average",
    ]
    peak = fit["peak_concurrency"]
    if peak is None:
        ceiling = (
            f"levels off towards {1000 / (fit['sigma'] * fit['single_query_ms']):.1f} queries/s"
            if fit["sigma"] > 0
            else "grows without limit"
        )
        lines.append(f"  kappa is 0: throughput never falls; it {ceiling}")
    else:
        at = f" ({fit['peak_throughput']:.1f} queries/s)" if fit["peak_throughput"] else ""
        lines.append(f"  throughput peaks at N* = sqrt((1-sigma)/kappa) = {peak:.1f}{at}")
        if peak > levels[-1]:
            lines.append(f"  (beyond the highest level measured, {levels[-1]}: extrapolated)")
    return lines


def print_calibration(document: CalibrationDocument, console: Console) -> None:
    """The level table, the fit, the simulator's flags and any notes."""
    console.print(level_table(document))
    fit = document["fit"]
    if fit is not None:
        for line in fit_lines(fit):
            console.print(line, highlight=False)
    if document["simulator_flags"]:
        console.print("A simulator that behaves like it:", highlight=False)
        command = shlex.join(["carebench", "serve", *document["simulator_flags"]])
        console.print(f"  {command}", highlight=False, soft_wrap=True)
    for note in document["notes"]:
        console.print(f"note: {note}", highlight=False)
    elapsed = document["elapsed_s"]
    minutes = f" ({elapsed / 60:.1f} min)" if elapsed >= 120 else ""
    console.print(f"Measured in {elapsed:.1f} s{minutes}.", highlight=False)


def progress_line(level: LevelResult) -> str:
    """One level as soon as it is measured (calibration takes tens of seconds)."""
    mean = level["mean_ms"]
    latency = "no successful query" if mean is None else f"mean {_ms(mean)} ms"
    errors = f", errors: {level['errors']}" if level["errors"] else ""
    return f"N = {level['concurrency']}: {level['throughput']:.1f} queries/s, {latency}{errors}"
