"""`carebench report`: reads saved results or sweeps, rejects bad files by name, exports."""

from __future__ import annotations

import argparse
import csv
import json
import re
from pathlib import Path
from typing import Any

import pytest

from carebench.cli import report
from carebench.errors import ConfigError
from carebench.loadgen.sweep import SweepDocument
from carebench.report import plots
from tests.report.conftest import make_result, make_sweep, sample_results

STUB_PNG = b"\x89PNG\r\n\x1a\nstub"


@pytest.fixture(autouse=True)
def stub_charts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Charts are tested in test_plots; here only whether the HTML gets written matters."""
    for name in ("latency_spectrum_png", "timeline_png", "outcomes_png", "sweep_png"):
        monkeypatch.setattr(plots, name, lambda *_: STUB_PNG)


def save(tmp_path: Path, document: Any, name: str = "results.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def run(file: Path, html: Path | None = None, csv_out: Path | None = None) -> int:
    args = argparse.Namespace(
        file=str(file),
        html=str(html) if html else None,
        csv=str(csv_out) if csv_out else None,
    )
    return report.run(args)


def test_register_adds_the_report_command() -> None:
    """`report FILE --html OUT --csv OUT` parses, and dispatches to report.run."""
    parser = argparse.ArgumentParser()
    report.register(parser.add_subparsers())
    args = parser.parse_args(["report", "r.json", "--html", "r.html", "--csv", "r.csv"])
    assert (args.file, args.html, args.csv, args.run) == ("r.json", "r.html", "r.csv", report.run)


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    """A file that does not exist is a ConfigError naming it."""
    missing = tmp_path / "nope.json"
    with pytest.raises(ConfigError, match=f"^{re.escape(str(missing))}: no such file$"):
        run(missing)


def test_directory_is_not_readable(tmp_path: Path) -> None:
    """A directory instead of a file is a ConfigError naming it (not a traceback)."""
    with pytest.raises(
        ConfigError, match=f"^{re.escape(str(tmp_path))}: cannot read it \\(Is a directory\\)$"
    ):
        run(tmp_path)


def test_binary_file_names_the_file(tmp_path: Path) -> None:
    """A file that is not UTF-8 text is a ConfigError naming it."""
    path = tmp_path / "results.json"
    path.write_bytes(b"\xff\xfe\x00[")
    with pytest.raises(ConfigError, match=f"^{re.escape(str(path))}: not UTF-8 text"):
        run(path)


def test_invalid_json_names_the_file(tmp_path: Path) -> None:
    """A file that is not JSON is a ConfigError naming it and the parse error."""
    path = tmp_path / "results.json"
    path.write_text("Total requests: 600\n", encoding="utf-8")
    with pytest.raises(
        ConfigError, match=rf"^{re.escape(str(path))}: not JSON \(Expecting value, line 1\)"
    ):
        run(path)


def as_json(document: Any) -> Any:
    """`document` as a JSON reader sees it, free to be broken."""
    return json.loads(json.dumps(document))


def without(key: str) -> dict[str, Any]:
    result: dict[str, Any] = as_json(make_result())
    del result[key]
    return result


def with_latency(**values: Any) -> dict[str, Any]:
    result: dict[str, Any] = as_json(make_result())
    result["latency_ms"].update(values)
    return result


def with_outcome(**values: Any) -> dict[str, Any]:
    result: dict[str, Any] = as_json(make_result())
    result["outcomes"].update(values)
    return result


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"pattern": "naive"}, "a JSON object is not a result file"),
        ("results", "a JSON string is not a result file"),
        ([], "holds no results"),
        ([make_result(), 3], "result 2 is a JSON number, not an object"),
        ([make_result(schema_version=2)], "result 1 has schema_version 2; this carebench reads 1"),
        ([without("schema_version")], "result 1 has schema_version None"),
        ([without("latency_ms")], "result 1: Object missing required field `latency_ms`"),
        ([{**make_result(), "pattern": 7}], "result 1: Expected `str`, got `int` - at `$.pattern`"),
        (
            [with_latency(p99=None)],
            "result 1: Expected `float`, got `null` - at `$.latency_ms.p99`",
        ),
        ([with_outcome(timeout="x")], "Expected `int`, got `str` - at `$.outcomes.timeout`"),
        ([make_result(), without("config")], "result 2: Object missing required field `config`"),
        ([make_result(interrupted=1)], "result 1: Expected `bool`, got `int` - at `$.interrupted`"),
    ],
)
def test_wrong_shape_names_the_file_and_the_problem(
    tmp_path: Path, document: Any, message: str
) -> None:
    """A JSON document that is not a results array is rejected, naming the file and why."""
    path = save(tmp_path, document)
    with pytest.raises(ConfigError) as caught:
        run(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)


def sweep_doc(**overrides: Any) -> dict[str, Any]:
    return {**make_sweep({"naive": [(10.0, 5.0), (50.0, 6.0)]}, levels=(10, 50)), **overrides}


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (sweep_doc(schema_version=9), "sweep schema_version 9; this carebench reads 1"),
        (sweep_doc(axis="workers"), "sweep axis 'workers' must be one of concurrency, rate"),
        (sweep_doc(levels=[]), "sweep 'levels' must be a non-empty list of numbers"),
        (sweep_doc(levels=["10"]), "sweep 'levels' must be a non-empty list of numbers"),
        (sweep_doc(results={}), "sweep 'results' must be a list of results"),
        (sweep_doc(results=[make_result()]), "result 1 has no numeric 'level'"),
        (sweep_doc(results=[make_result(level=True)]), "result 1 has no numeric 'level'"),
        (sweep_doc(interrupted="no"), "sweep: Expected `bool`, got `str` - at `$.interrupted`"),
        (sweep_doc(kind="sweep", machine=None), "sweep: Expected `object`, got `null`"),
    ],
)
def test_bad_sweep_names_the_file_and_the_problem(
    tmp_path: Path, document: dict[str, Any], message: str
) -> None:
    """A malformed sweep document is rejected, naming the file and the rule it breaks."""
    path = save(tmp_path, document)
    with pytest.raises(ConfigError, match=f"^{re.escape(str(path))}: ") as caught:
        run(path)
    assert message in str(caught.value)


def test_valid_file_prints_the_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every pattern's block, the comparison table and the winner are printed; exit code 0."""
    assert run(save(tmp_path, sample_results())) == 0
    out = capsys.readouterr().out
    for name in ("naive", "workerpool", "optimized"):
        assert f"=== {name} (http, closed loop) ===" in out
    assert "Comparison" in out
    assert "Winner: workerpool" in out


def test_html_and_csv_are_written_when_asked(tmp_path: Path) -> None:
    """--html writes the HTML report, --csv the flat table with one row per pattern."""
    html, table = tmp_path / "out.html", tmp_path / "out.csv"
    run(save(tmp_path, sample_results()), html=html, csv_out=table)
    assert "Winner: workerpool" in html.read_text(encoding="utf-8")
    rows = list(csv.DictReader(table.read_text(encoding="utf-8").splitlines()))
    assert [row["pattern"] for row in rows] == ["naive", "workerpool", "optimized"]


def test_nothing_is_written_unless_asked(tmp_path: Path) -> None:
    """Without --html or --csv the command only prints."""
    path = save(tmp_path, sample_results())
    run(path)
    assert list(tmp_path.iterdir()) == [path]


def test_sweep_prints_a_table_per_level_and_the_knee(
    tmp_path: Path, sweep: SweepDocument, capsys: pytest.CaptureFixture[str]
) -> None:
    """A sweep prints one table per level, and each pattern's peak and p99 knee."""
    assert run(save(tmp_path, sweep)) == 0
    out = capsys.readouterr().out
    for level in (10, 50, 100):
        assert f"concurrency = {level}" in out
    assert (
        "naive: goodput peaks at 50 clients (90.0 successful req/s); "
        "p99 of successes passes 2x its lowest-level value at 100"
    ) in out
    assert (
        "workerpool: goodput peaks at 50 clients (100.0 successful req/s); "
        "p99 of successes stays within 2x of its lowest-level value"
    ) in out


def test_sweep_exports_html_and_csv_with_levels(tmp_path: Path, sweep: SweepDocument) -> None:
    """A sweep's HTML is the sweep report; its CSV has a level column, a row per result."""
    html, table = tmp_path / "sweep.html", tmp_path / "sweep.csv"
    run(save(tmp_path, sweep), html=html, csv_out=table)
    assert "carebench sweep over concurrency" in html.read_text(encoding="utf-8")
    rows = list(csv.DictReader(table.read_text(encoding="utf-8").splitlines()))
    assert [(row["level"], row["pattern"]) for row in rows][:3] == [
        ("10", "naive"),
        ("50", "naive"),
        ("100", "naive"),
    ]
    assert len(rows) == len(sweep["results"])
