"""Reading a tune or capacity search: tables for the terminal and a self-contained HTML page."""

from __future__ import annotations

from html import escape
from pathlib import Path

from rich.console import Console
from rich.table import Table

from carebench.report.files import write_atomically
from carebench.report.html import _image, _page
from carebench.tuning.documents import CapacityDocument, PatternCapacity, TuneDocument
from carebench.tuning.search import WIDE_SPREAD_PERCENT, Candidate, Spread


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _range(values: Spread | None, digits: int = 1) -> str:
    if values is None:
        return "-"
    return f"{values['min']:.{digits}f}-{values['max']:.{digits}f}"


def _show(value: float) -> str:
    """A value as the flag takes it (whole numbers without a decimal point; durations in s)."""
    return f"{value:g}"


def tune_table(document: TuneDocument) -> Table:
    """One row per candidate, in order of value; the best is starred."""
    target = document["target_p99_ms"]
    parameter = document["parameter"]
    table = Table(title=f"{document['pattern']}: {parameter['flag']}", title_justify="left")
    headers = (
        parameter["flag"], "phase", "goodput/s", "range", "spread %", "p99 ok ms", "range",
        f"p99 <= {target:g} ms",
    )  # fmt: skip
    for index, header in enumerate(headers):
        table.add_column(header, justify="left" if index < 2 else "right")
    best = document["best"]
    for candidate in document["candidates"]:
        star = " *" if best is not None and candidate["value"] == best["value"] else ""
        spread = candidate["goodput"]["stdev_percent"]
        table.add_row(
            _show(candidate["value"]) + star,
            candidate["phase"],
            f"{candidate['goodput']['median']:.1f}",
            _range(candidate["goodput"]),
            f"{spread:.1f}" + (" !" if candidate["wide_spread"] else ""),
            _ms(candidate["percentile_ms"]["median"] if candidate["percentile_ms"] else None),
            _range(candidate["percentile_ms"]),
            "yes" if candidate["meets_target"] else "no",
        )
    return table


def tune_lines(document: TuneDocument) -> list[str]:
    """The verdict (best setting, or why there is none) and the caveats."""
    flag = document["parameter"]["flag"]
    trials = document["scenario"]["trials"]
    best = document["best"]
    if best is not None:
        lines = [
            f"best: {flag} {_show(best['value'])}: goodput "
            f"{best['goodput']['median']:.1f}/s, p99 of successes "
            f"{_ms(_median(best))} ms (medians of {trials} trials)",
        ]
    else:
        lowest = min(document["candidates"], key=lambda c: _median(c) or float("inf"))
        lines = [
            f"no candidate meets p99 <= {document['target_p99_ms']:g} ms; the lowest median "
            f"p99 was {_ms(_median(lowest))} ms at {flag} {_show(lowest['value'])}"
        ]
    wide = [_show(c["value"]) for c in document["candidates"] if c["wide_spread"]]
    if wide:
        lines.append(
            f"! wide spread (goodput stdev >= {WIDE_SPREAD_PERCENT:g}% of its mean) at {flag} "
            f"{', '.join(wide)}: rerun with more --trials or a longer --duration"
        )
    lines.append(f"rule: {document['rule']}")
    lines.append(f"runs: {document['runs']} of at most {document['max_runs']}")
    return lines


def _median(candidate: Candidate) -> float | None:
    latency = candidate["percentile_ms"]
    return latency["median"] if latency else None


def print_tune(document: TuneDocument, console: Console) -> None:
    console.print(tune_table(document))
    for line in tune_lines(document):
        console.print(line, highlight=False, markup=False)


def _failing_above(result: PatternCapacity) -> tuple[float, str] | None:
    """The lowest rate that failed above the capacity, and why."""
    capacity = result["capacity_per_second"] or 0.0
    failed = [p for p in result["probes"] if not p["passed"] and p["rate"] > capacity]
    if not failed:
        return None
    lowest = min(failed, key=lambda p: p["rate"])
    return lowest["rate"], lowest["reason"] or ""


def capacity_table(document: CapacityDocument) -> Table:
    """One row per pattern: its capacity, the probes it took and what broke above it."""
    slo = document["slo"]
    table = Table(title=f"Capacity within {slo['text']}", title_justify="left")
    headers = (
        "pattern", "capacity req/s", "probes", "runs", f"{slo['percentile']} ok ms at capacity",
        "fails at req/s", "because",
    )  # fmt: skip
    for index, header in enumerate(headers):
        table.add_column(header, justify="right" if 0 < index < 5 else "left")
    for result in document["patterns"]:
        above = _failing_above(result)
        table.add_row(
            result["pattern"],
            _capacity_text(result),
            str(len(result["probes"])),
            str(result["runs"]),
            _ms(result["percentile_ms_at_capacity"]),
            f"{above[0]:.1f}" if above else "-",
            above[1] if above else "-",
        )
    return table


def _capacity_text(result: PatternCapacity) -> str:
    capacity = result["capacity_per_second"]
    if capacity is None:
        return "< 1"
    prefix = ">= " if result["status"] == "at-least-max-rate" else ""
    return f"{prefix}{capacity:.1f}"


def capacity_lines(document: CapacityDocument) -> list[str]:
    slo = document["slo"]
    return [
        f"SLO: {slo['percentile']} of successes <= {slo['threshold_ms']:g} ms and at most "
        f"{slo['max_failed_percent']:g}% of requests refused or late (503/429, 504, timeouts; "
        "the database's own 500s are not counted)",
        f"rule: {document['rule']}",
        f"search: doubling from {document['start_rate']:g}/s (up to {document['max_rate']:g}/s), "
        f"then bisection to {document['precision_percent']:g}%; at most "
        f"{document['max_probes']} probes per pattern",
    ]


def print_capacity(document: CapacityDocument, console: Console) -> None:
    console.print(capacity_table(document))
    for line in capacity_lines(document):
        console.print(line, highlight=False, markup=False)


def _table_html(table: Table) -> str:
    head = "".join(f"<th>{escape(str(column.header))}</th>" for column in table.columns)
    columns = [[str(cell) for cell in column.cells] for column in table.columns]
    rows = "".join(
        "<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in cells) + "</tr>"
        for cells in zip(*columns, strict=True)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _paragraphs(lines: list[str]) -> list[str]:
    return [f"<p>{escape(line)}</p>" for line in lines]


def write_tune_html(document: TuneDocument, path: str | Path) -> None:
    """The tune search as a page: the plot, the candidates and the verdict."""
    from carebench.report.tuning_plots import tune_png

    title = f"carebench tune: {document['pattern']} {document['parameter']['flag']}"
    body = [
        f"<h1>{escape(title)}</h1>",
        _image(tune_png(document), "goodput and p99 against the tuned setting"),
        _table_html(tune_table(document)),
        *_paragraphs(tune_lines(document)),
        f"<p>scenario: {escape(_scenario_text(document))}</p>",
    ]
    write_atomically(path, _page(title, body))


def write_capacity_html(document: CapacityDocument, path: str | Path) -> None:
    """The capacity search as a page: the plot of the probes, the table and the rule."""
    from carebench.report.tuning_plots import capacity_png

    title = f"carebench capacity within {document['slo']['text']}"
    body = [
        f"<h1>{escape(title)}</h1>",
        _image(capacity_png(document), "rates probed and their latency, per pattern"),
        _table_html(capacity_table(document)),
        *_paragraphs(capacity_lines(document)),
        f"<p>scenario: {escape(_scenario_text(document))}</p>",
    ]
    write_atomically(path, _page(title, body))


def _scenario_text(document: TuneDocument | CapacityDocument) -> str:
    scenario = document["scenario"]
    return (
        f"{scenario['mode']}, {scenario['loop']} loop, concurrency {scenario['concurrency']}, "
        f"{scenario['duration_seconds']:g} s measured after {scenario['warmup_seconds']:g} s "
        f"warm-up, {scenario['trials']} trials; server flags: {' '.join(scenario['server_args'])}"
    )
