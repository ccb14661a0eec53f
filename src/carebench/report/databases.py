"""BENCHMARKS.md's real-database sections: the calibrations (USL fits) and how far the
simulator calibrated to PostgreSQL is from PostgreSQL itself, per pattern."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import cast

from carebench.calibrate.calibration import CalibrationDocument
from carebench.loadgen.results import LoadTestResult
from carebench.report.documents import read_results
from carebench.report.sweep import success_p99

#: Which real databases collect_databases.sh calibrates, in the order they are shown.
CALIBRATED = ("postgres", "sqlite")
CPU_SHARING = (
    "PostgreSQL runs on the same two cores as everything else: `carebench db up` is started "
    "pinned to CPU 0, so the database's server processes share CPU 0 with the carebench "
    "server, and the load generator keeps CPU 1 to itself. SQLite runs inside the carebench "
    "server process (CPU 0). Calibration drives each database in-process from an unpinned "
    "process."
)


def _calibration(directory: Path, name: str) -> CalibrationDocument | None:
    path = directory / f"calibrate-{name}.json"
    if not path.exists():
        return None
    return cast(CalibrationDocument, json.loads(path.read_text(encoding="utf-8")))


def calibration_section(directory: Path, docs: Path) -> str:
    """The fitted coefficients of each real database, with the matching simulator flags."""
    documents = {name: _calibration(directory, name) for name in CALIBRATED}
    found = {name: doc for name, doc in documents.items() if doc is not None}
    if not found:
        return ""
    lines = [
        "## Calibration: the real databases fitted to the simulator's model\n",
        "`carebench calibrate --backend NAME` drives the database directly (no HTTP) at 1, 2, "
        "4, ... queries at once and fits the Universal Scalability Law, latency(N) = L1 * "
        "(1 + sigma*(N-1) + kappa*N*(N-1)), by least squares. " + CPU_SHARING + "\n",
        "| database | single query (ms) | sigma | kappa | peak at N | peak queries/s | R² "
        "| throughput error | levels |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, doc in found.items():
        fit = doc["fit"]
        if fit is None:
            lines.append(f"| {name} | no fit | | | | | | | |")
            continue
        peak = fit["peak_concurrency"]
        peak_rate = fit["peak_throughput"]
        r2 = fit["r_squared"]
        lines.append(
            f"| {name} | {fit['single_query_ms']:.3f} | {fit['sigma']:.4f} | "
            f"{fit['kappa']:.6f} | {'-' if peak is None else f'{peak:.1f}'} | "
            f"{'-' if peak_rate is None else f'{peak_rate:.0f}'} | "
            f"{'-' if r2 is None else f'{r2:.3f}'} | {fit['throughput_error']:.1%} | "
            f"{','.join(str(level) for level in fit['levels'])} |"
        )
    lines.append("")
    for name, doc in found.items():
        lines.append(f"- **{name}**: simulator flags `{' '.join(doc['simulator_flags'])}`")
        lines += [f"  - {note}" for note in doc["notes"]]
    lines.append("")
    for name in found:
        image = docs / f"calibrate-{name}.png"
        if image.exists():
            lines.append(f"![calibration, {name}]({image.as_posix()})\n")
    return "\n".join(lines) + "\n"


def _pairs(directory: Path) -> tuple[list[LoadTestResult], list[LoadTestResult]] | None:
    real = directory / "loadtest-postgres-c100.json"
    model = directory / "loadtest-calibrated-c100.json"
    if not (real.exists() and model.exists()):
        return None
    return read_results(real), read_results(model)


def _ratio(model: float, real: float) -> float | None:
    return model / real if real > 0 else None


def _text(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}"


def model_versus_reality(directory: Path) -> tuple[str, list[str]]:
    """The section comparing the calibrated simulator with PostgreSQL, and its summary lines
    for the analysis."""
    pairs = _pairs(directory)
    if pairs is None:
        return "", []
    real, model = pairs
    by_pattern = {r["pattern"]: r for r in model}
    rows = [
        "| pattern | PostgreSQL goodput/s | model goodput/s | model / real | "
        "PostgreSQL p99 ok ms | model p99 ok ms | model / real |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    goodput_ratios: list[float] = []
    p99_ratios: list[float] = []
    for r in real:
        m = by_pattern.get(r["pattern"])
        if m is None:
            continue
        goodput = _ratio(m["goodput_per_second"], r["goodput_per_second"])
        p99 = _ratio(success_p99(m), success_p99(r))
        goodput_ratios += [goodput] if goodput is not None else []
        p99_ratios += [p99] if p99 is not None else []
        rows.append(
            f"| {r['pattern']} | {r['goodput_per_second']:.1f} | {m['goodput_per_second']:.1f} "
            f"| {_text(goodput)} | {success_p99(r):.1f} | {success_p99(m):.1f} | {_text(p99)} |"
        )
    summary = (
        "calibrated simulator against PostgreSQL at 100 clients: median model/real ratio "
        f"{_text(_median(goodput_ratios))} for goodput, {_text(_median(p99_ratios))} for the p99 "
        "of successes (1.00 = the model predicts reality)"
    )
    section = (
        "## The calibrated simulator against PostgreSQL\n\n"
        "The same closed-loop load test (100 clients, `--ids uniform:10000`, 10 s after 2 s of "
        "warm-up) against the real PostgreSQL and against the simulator run with the flags "
        "`carebench calibrate` fitted to it (above). A ratio of 1.00 means the model predicts "
        "the real database; far from 1 means the model leaves out what dominates there. "
        "One difference is built into this set-up: a simulated query costs the server's core "
        "nothing, while PostgreSQL's server processes share CPU 0 with the carebench server "
        "during the load test (during calibration the measuring process could run on the "
        "other core). " + CPU_SHARING + "\n\n" + "\n".join(rows) + f"\n\n- {summary}\n"
    )
    return section, [summary]


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None
