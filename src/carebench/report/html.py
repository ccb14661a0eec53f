"""Self-contained HTML reports: inline CSS, charts as base64 PNGs, every text escaped."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Sequence
from html import escape
from pathlib import Path
from typing import Any

from carebench.loadgen.results import LoadTestResult
from carebench.loadgen.sweep import SweepDocument
from carebench.report import plots
from carebench.report.files import write_atomically
from carebench.report.terminal import LEGEND, detail_block, load_line, summary_table, winner_lines

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1250px; color: #222; }
h1 { margin-bottom: 0.2rem; }
h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; margin-top: 2rem; }
table { border-collapse: collapse; margin: 0.5rem 0; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.6rem; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.note { background: #fff4d6; border-left: 4px solid #f2a900; padding: 0.5rem 0.8rem; }
.winner { font-weight: 600; }
.legend { color: #555; font-size: 0.9em; }
pre { background: #f7f7f7; padding: 0.6rem; overflow-x: auto; }
img { max-width: 100%; display: block; margin: 0.5rem 0; }
"""


def render_html(results: Sequence[LoadTestResult]) -> str:
    """The HTML report of a `carebench loadtest` run (one result per pattern)."""
    results = list(results)
    names = ", ".join(r["pattern"] for r in results)
    body = [
        f"<h1>carebench load test: {escape(names)}</h1>",
        _notes_html(results),
        _machine_section(results),
        _config_section(results),
        "<h2>Summary</h2>",
        f"<p>{escape(load_line(results[0]))}</p>" if results else "",
        _summary(results),
        f'<p class="legend">{escape(LEGEND)}</p>',
        _winner(results),
        "<h2>Latency by percentile</h2>",
        _image(plots.latency_spectrum_png(results), "latency percentile spectrum"),
        "<h2>Outcomes</h2>",
        _image(plots.outcomes_png(results), "outcome mix per pattern"),
        "<h2>Over time</h2>",
        *(_image(plots.timeline_png(r), f"{r['pattern']} over time") for r in results),
        "<h2>Details</h2>",
        *(f"<pre>{escape(detail_block(r))}</pre>" for r in results),
    ]
    return _page(f"carebench load test: {names}", body)


def write_html(results: Sequence[LoadTestResult], path: str | Path) -> None:
    """Write the report of `results` to `path`."""
    write_atomically(path, render_html(results))


def render_sweep_html(sweep: SweepDocument) -> str:
    """The HTML report of a `carebench sweep` document: the sweep chart and one table per level."""
    axis = sweep["axis"]
    results = sweep["results"]
    levels = sweep["levels"]
    body = [
        f"<h1>carebench sweep over {escape(axis)}</h1>",
        _notes_html(results),
        _machine_section(results),
        _config_section(results, {axis: f"swept: {', '.join(f'{x:g}' for x in levels)}"}),
        "<h2>Against offered load</h2>",
        _image(plots.sweep_png(sweep), f"throughput, p99 and rejections against {axis}"),
    ]
    for level in levels:
        at_level = [r for r in results if r["level"] == level]
        if at_level:
            body += [f"<h2>{escape(axis)} = {escape(f'{level:g}')}</h2>", _summary(at_level)]
            body.append(_winner(at_level))
    return _page(f"carebench sweep over {axis}", body)


def write_sweep_html(sweep: SweepDocument, path: str | Path) -> None:
    """Write the report of a sweep document to `path`."""
    write_atomically(path, render_sweep_html(sweep))


def _page(title: str, body: Iterable[str]) -> str:
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{escape(title)}</title>",
            f"<style>{STYLE}</style>",
            "</head><body>",
            *(part for part in body if part),
            "</body></html>",
            "",
        ]
    )


def _image(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{escape(alt)}">'


def _summary(results: Sequence[LoadTestResult]) -> str:
    """The terminal's summary table (same columns, same formatting) as an HTML table."""
    table = summary_table(results)
    head = "".join(f"<th>{escape(str(c.header))}</th>" for c in table.columns)
    columns = [[str(cell) for cell in column.cells] for column in table.columns]
    rows = []
    for cells in zip(*columns, strict=True):
        tds = [f"<td>{escape(cells[0])}</td>"]
        tds += [f'<td class="num">{escape(cell)}</td>' for cell in cells[1:]]
        rows.append(f"<tr>{''.join(tds)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _winner(results: Sequence[LoadTestResult]) -> str:
    lines = winner_lines(results)
    if not lines:
        return ""
    first, rest = lines[0], [line.strip() for line in lines[1:]]
    items = "".join(f"<li>{escape(line)}</li>" for line in rest)
    return f'<p class="winner">{escape(first)}</p>' + (f"<ul>{items}</ul>" if items else "")


def notes(results: Sequence[LoadTestResult]) -> list[str]:
    """Why some numbers need care: in-process runs, interrupted runs, schedules not kept."""
    found = []
    if any(r["mode"] == "inprocess" for r in results):
        found.append(
            "Measured in-process (no HTTP, no server process): the numbers leave out the "
            "network and server overhead and are not comparable with HTTP runs."
        )
    for r in results:
        where = _where(r)
        if r["interrupted"]:
            found.append(f"{where} was interrupted: its results are partial.")
        open_loop = r["open_loop"]
        if open_loop and not open_loop["schedule_kept"]:
            found.append(
                f"{where}: the load generator could not keep the open-loop schedule "
                f"(target {open_loop['target_rate']:g}/s, achieved "
                f"{open_loop['achieved_rate']:.1f}/s, worst lag {open_loop['max_lag_ms']:.1f} ms); "
                "the server received less load than asked for."
            )
    return found


def _where(result: LoadTestResult) -> str:
    level = f" at level {result['level']:g}" if "level" in result else ""
    return f"{result['pattern']}{level}"


def _notes_html(results: Sequence[LoadTestResult]) -> str:
    return "".join(f'<p class="note">{escape(note)}</p>' for note in notes(results))


def _machine_section(results: Sequence[LoadTestResult]) -> str:
    machine = next((r["machine"] for r in results if "machine" in r), None)
    if not machine:
        return ""
    memory = machine["memory_bytes"]
    rows = {
        "CPU": f"{machine['cpu_model']} ({machine['cores'] or '?'} cores)",
        "memory": f"{memory / 2**30:.1f} GiB" if memory else "?",
        "OS": machine["os"],
        "Python": machine["python"],
        "packages": ", ".join(f"{name} {version}" for name, version in machine["packages"].items()),
        "date": machine["date"],
    }
    return "<h2>Machine</h2>" + _key_value_table(rows)


def _config_section(results: Sequence[LoadTestResult], fixed: dict[str, str] | None = None) -> str:
    """Settings shared by every run in one table; any that differ, side by side per run.
    `fixed` overrides settings for all runs (a sweep's axis: the list of levels)."""
    configs = [{**_settings(r), **(fixed or {})} for r in results]
    if not configs:
        return ""
    keys = list(dict.fromkeys(key for config in configs for key in config))
    varying = [key for key in keys if any(c.get(key) != configs[0].get(key) for c in configs)]
    shared = {key: configs[0][key] for key in keys if key not in varying}
    parts = ["<h2>Configuration</h2>", _key_value_table(shared)]
    if varying:
        head = "".join(f"<th>{escape(_where(r))}</th>" for r in results)
        rows = "".join(
            f"<tr><th>{escape(key)}</th>"
            + "".join(f"<td>{escape(_text(c.get(key)))}</td>" for c in configs)
            + "</tr>"
            for key in varying
        )
        parts.append(f"<table><thead><tr><th></th>{head}</tr></thead>{rows}</table>")
    return "".join(parts)


def _settings(result: LoadTestResult) -> dict[str, Any]:
    settings: dict[str, Any] = {"mode": result["mode"], "loop": result["loop"]}
    # Servers the load test starts itself listen on random ports: only a --target is a setting.
    if result["mode"] == "target":
        settings["target"] = result["target"]
    return {**settings, **result["config"]}


def _key_value_table(rows: dict[str, Any]) -> str:
    body = "".join(
        f"<tr><th>{escape(str(key))}</th><td>{escape(_text(value))}</td></tr>"
        for key, value in rows.items()
    )
    return f"<table>{body}</table>"


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return " ".join(str(item) for item in value)
    return value if isinstance(value, str) else json.dumps(value)
