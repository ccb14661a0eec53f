"""`carebench sweep`: each pattern at each level, tagged with its level, against real servers."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from carebench.loadgen.config import LoadConfig
from carebench.loadgen.runner import RunPlan
from carebench.loadgen.sweep import run_sweep
from carebench.report.sweep import goodput_peak, sweep_series

pytestmark = pytest.mark.slow
FAST_DB = ["--min-latency", "2", "--max-latency", "2", "--error-rate", "0", "--db-profile", "ideal"]


def test_in_process_sweep_covers_every_level_and_pattern() -> None:
    """One result per pattern per level, in order, each tagged with its level."""
    plan = RunPlan(patterns=["naive", "semaphore"], load=LoadConfig(), mode="inprocess")
    sweep = run_sweep(plan, "concurrency", [2, 8], duration=0.3)
    assert sweep["kind"] == "sweep" and sweep["axis"] == "concurrency"
    assert [(r["pattern"], r["level"]) for r in sweep["results"]] == [
        ("naive", 2),
        ("semaphore", 2),
        ("naive", 8),
        ("semaphore", 8),
    ]
    assert all(r["config"]["concurrency"] == r["level"] for r in sweep["results"])
    for points in sweep_series(sweep).values():
        assert goodput_peak(points) is not None


def test_sweep_command_prints_json_over_http() -> None:
    """The CLI drives real servers at each rate level and prints the sweep document."""
    command = [
        sys.executable,
        "-m",
        "carebench",
        "sweep",
        "--rate",
        "20,40",
        "--duration",
        "0.5",
        "--warmup",
        "0",
        "--pattern",
        "workerpool",
        "--json",
        *FAST_DB,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    sweep = json.loads(result.stdout)
    assert sweep["axis"] == "rate" and sweep["levels"] == [20.0, 40.0]
    assert [r["open_loop"]["target_rate"] for r in sweep["results"]] == [20.0, 40.0]


@pytest.mark.parametrize("levels", ["50,10", "10,x", "0,10", ""])
def test_bad_levels_exit_2(levels: str) -> None:
    """Levels must be positive, numeric and increasing: otherwise `error:` and exit 2."""
    command = [sys.executable, "-m", "carebench", "sweep", "--concurrency", levels]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 2
    assert result.stderr.startswith("error:")
    assert "Traceback" not in result.stderr
