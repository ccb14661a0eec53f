"""Fault windows in results and reports: placed on the run's clock, recovery read off the
timeline, shaded on the timeline plot, listed in the terminal and Markdown reports."""

from __future__ import annotations

import json
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from carebench.backends.simulator import SimulatorConfig
from carebench.faults.config import FaultConfig
from carebench.faults.timeline import FaultWindowReport, windows_in_run
from carebench.loadgen.config import LoadConfig
from carebench.loadgen.results import OUTCOMES, LoadTestResult, TimelinePoint, outcome_counts
from carebench.loadgen.runner import RunPlan, run_plan
from carebench.report import plots
from carebench.report.documents import check_results
from carebench.report.faults import fault_lines, recoveries, recovery_lines
from carebench.report.markdown import _profile_args, _scenario
from carebench.report.terminal import detail_block
from carebench.server.setup import ServerSetup
from tests.report.conftest import make_result

OUTAGE: FaultWindowReport = {"kind": "outage", "label": "outage", "start": 2.0, "end": 3.0}
SLOW: FaultWindowReport = {"kind": "slow", "label": "slow x5", "start": 4.0, "end": 5.0}


def goodput_timeline(goodputs: Sequence[float], width: float = 0.5) -> list[TimelinePoint]:
    points: list[TimelinePoint] = []
    for index, goodput in enumerate(goodputs):
        done = int(goodput * width)
        points.append(
            {
                "t": index * width, "completed": done, "throughput": goodput, "goodput": goodput,
                **outcome_counts({**dict.fromkeys(OUTCOMES, 0), "success": done}),
                "p50_ms": 1.0, "p99_ms": 2.0,
            }
        )  # fmt: skip
    return points


#: 100/s, nothing during the outage (2-3 s), back at 3.5 s; halved by the slowdown (4-5 s),
#: back at once; over 6 s.
GOODPUT = [100, 100, 100, 100, 0, 0, 40, 95, 50, 50, 100, 100]


def faulted(**overrides: Any) -> LoadTestResult:
    fields: dict[str, Any] = {
        "timeline": goodput_timeline(GOODPUT),
        "duration_seconds": 6.0,
        "faults": [OUTAGE, SLOW],
    }
    return make_result("workerpool", **{**fields, **overrides})


def test_windows_move_onto_the_runs_clock() -> None:
    """The server said 12.5 s of its clock had passed when the run was 10 s in: its windows
    are 2.5 s earlier on the run's clock."""
    faults = {
        "elapsed_seconds": 12.5,
        "schedule": [
            {"kind": "outage", "label": "outage", "start_seconds": 5.0, "end_seconds": 6.0},
            {"kind": "slow", "label": "slow x2", "start_seconds": 8.0, "end_seconds": None},
        ],
    }
    assert windows_in_run(faults, 10.0) == [
        {"kind": "outage", "label": "outage", "start": 2.5, "end": 3.5},
        {"kind": "slow", "label": "slow x2", "start": 5.5, "end": None},
    ]


@pytest.mark.parametrize("faults", [None, [], {"schedule": []}, {"elapsed_seconds": None}])
def test_no_schedule_means_no_windows(faults: Any) -> None:
    assert windows_in_run(faults, 1.0) is None


def test_recovery_is_read_off_the_timeline() -> None:
    """Outage ends at 3.0; 3.0-3.5 is at 40 %, 3.5-4.0 at 95 %: recovered 0.5 s after.
    The slowdown ends at 5.0 and the next interval is back at 100 %."""
    outage, slow = recoveries(faulted())

    assert (outage.status, outage.seconds, outage.before) == ("recovered", 0.5, 100.0)
    assert (slow.status, slow.seconds) == ("recovered", 0.0)


def test_not_recovered_no_baseline_ongoing_and_after_the_run() -> None:
    stuck = faulted(timeline=goodput_timeline([100] * 4 + [0] * 8))
    assert [r.status for r in recoveries(stuck)] == ["not recovered", "not recovered"]

    at_once: FaultWindowReport = {**OUTAGE, "start": -0.5}
    assert recoveries(faulted(faults=[at_once]))[0].status == "no baseline"

    endless: FaultWindowReport = {**SLOW, "end": None}
    late: FaultWindowReport = {**SLOW, "start": 7.0, "end": 8.0}
    statuses = [r.status for r in recoveries(faulted(faults=[OUTAGE, endless]))]
    assert statuses == ["recovered", "ongoing"]
    assert recoveries(faulted(faults=[late]))[0].status == "after the run"
    assert recoveries(make_result()) == []


def test_the_detail_block_and_the_comparison_list_the_windows() -> None:
    block = detail_block(faulted())
    assert "recovered = goodput back to 90% of 100/s" in block
    assert "  outage       2.0-3.0 s      recovered 0.5 s after" in block
    assert "  slow x5      4.0-5.0 s      recovered 0.0 s after" in block
    assert fault_lines(make_result()) == []
    assert "Faults:" not in detail_block(make_result())

    lines = recovery_lines([faulted(), make_result("naive")])
    assert lines[1:] == ["  workerpool: outage 0.5 s, slow x5 0.0 s", "  naive: no fault windows"]
    assert recovery_lines([make_result()]) == []


def test_markdown_shows_the_schedule_and_the_recovery(tmp_path: Path) -> None:
    args = ["--min-latency", "0.005s", "--faults", "at 2s outage for 1s", "--seed", "1"]
    assert _profile_args(args)[-1] == "--faults 'at 2s outage for 1s'"
    section = _scenario("faults", [faulted()], tmp_path)
    assert "- workerpool: outage 0.5 s, slow x5 0.0 s" in section
    assert "Recovery" not in _scenario("plain", [make_result()], tmp_path)


def test_the_timeline_plot_shades_the_windows() -> None:
    """Shaded windows change the image; windows outside the run change nothing."""
    plain = plots.timeline_png(faulted(faults=[]))
    assert plots.timeline_png(faulted()) != plain
    outside: FaultWindowReport = {**OUTAGE, "start": 50.0, "end": 60.0}
    assert plots.timeline_png(faulted(faults=[outside])) == plain


def test_results_with_windows_match_the_schema_and_the_reader(tmp_path: Path) -> None:
    result = faulted()
    text = resources.files("carebench.report").joinpath("schema.json").read_text()
    jsonschema.validate([result], json.loads(text))
    assert check_results(tmp_path / "r.json", [result]) == [result]


@pytest.mark.slow
def test_an_in_process_load_test_records_where_the_windows_fell() -> None:
    """In-process, the schedule starts with the backend, a warm-up before measuring: `at 1.5s`
    after a 0.5 s warm-up is about 1 s into the run; the outage shows in the timeline."""
    setup = ServerSetup(
        database=SimulatorConfig(0.002, 0.002, 0.0, profile="ideal"),
        faults=FaultConfig("at 1.5s outage for 0.5s; at 3s slow x3"),
    )
    load = LoadConfig(concurrency=4, duration=3.0, warmup=0.5)
    (result,) = run_plan(RunPlan(["workerpool"], load, mode="inprocess", setup=setup))

    outage, slow = result["faults"]
    assert (outage["label"], slow["label"], slow["end"]) == ("outage", "slow x3", None)
    assert outage["start"] == pytest.approx(1.0, abs=0.1)
    assert outage["end"] is not None
    assert outage["end"] - outage["start"] == pytest.approx(0.5)
    assert result["outcomes"]["backend_error"] > 0
    assert recoveries(result)[0].status == "recovered"
