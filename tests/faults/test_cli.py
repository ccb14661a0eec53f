"""--faults at the command line: exit 2 on bad input, the environment, and forwarding from
loadtest and sweep to the servers they start."""

from __future__ import annotations

import os
from typing import Any

import pytest

from carebench.cli import build_parser, main
from carebench.cli import serve as serve_command
from carebench.cli.loadtest import build_plan
from carebench.cli.options import server_setup
from carebench.cli.sweep import build as build_sweep
from carebench.faults.config import FaultConfig
from carebench.server.setup import ServerSetup
from carebench.server.startup import banner_lines

SCHEDULE = "at 10s outage for 5s; at 30s slow x5 for 10s; at 50s errors 50% for 5s"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """No CAREBENCH_* variable leaks in, and `serve` returns instead of serving."""
    for name in list(os.environ):
        if name.startswith("CAREBENCH_"):
            monkeypatch.delenv(name)
    calls: list[tuple[Any, ...]] = []

    def fake_serve(*args: Any) -> int:
        calls.append(args)
        return 0

    monkeypatch.setattr(serve_command, "serve", fake_serve)
    return calls


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        code: Any = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    "command", [["serve"], ["loadtest"], ["sweep", "--concurrency", "1,2"]], ids=lambda c: c[0]
)
@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("at 1s brownout", "unknown fault 'brownout'"),
        ("at soon outage", "invalid start time 'soon'"),
        ("at 1s errors 5 for 1s", "errors needs a share like 50%"),
        ("at 1s outage for 5s; at 2s slow x3 for 1s", "overlap"),
    ],
)
def test_bad_schedules_exit_2_with_an_error_naming_the_flag(
    command: list[str], text: str, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = run([*command, "--faults", text], capsys)

    assert code == 2
    assert err.startswith("error: --faults: ")
    assert says in err
    assert "Traceback" not in err


def test_serve_takes_the_schedule(clean_environment, capsys) -> None:
    code, _ = run(["serve", "--faults", SCHEDULE], capsys)

    assert code == 0
    (pattern, setup), *_ = clean_environment
    assert setup.faults == FaultConfig(SCHEDULE)
    assert f"  faults           {SCHEDULE} (timed from now)" in banner_lines(pattern, setup)


def test_the_environment_sets_it_and_a_blank_one_means_none(monkeypatch) -> None:
    monkeypatch.setenv("CAREBENCH_FAULTS", "at 2s outage for 1s")
    assert server_setup(build_parser().parse_args(["serve"])).faults.faults == "at 2s outage for 1s"
    monkeypatch.setenv("CAREBENCH_FAULTS", "  ")
    assert server_setup(build_parser().parse_args(["serve"])).faults.schedule is None


def test_loadtest_and_sweep_forward_the_schedule_to_their_servers() -> None:
    """The flags a load test gives each `carebench serve` parse back to the same schedule."""
    plan = build_plan(build_parser().parse_args(["loadtest", "--faults", SCHEDULE]))
    assert plan.server_args[-2:] == ["--faults", SCHEDULE]
    served = server_setup(build_parser().parse_args(["serve", *plan.server_args]))
    assert served == plan.setup

    sweep_plan, _ = build_sweep(
        build_parser().parse_args(["sweep", "--concurrency", "1", "--faults", SCHEDULE])
    )
    assert sweep_plan.setup.faults.faults == SCHEDULE
    assert "--faults" not in ServerSetup().as_flags()


def test_a_target_runs_its_own_faults(capsys) -> None:
    """With --target the schedule would be silently ignored: refused instead."""
    code, err = run(["loadtest", "--target", "http://127.0.0.1:9", "--faults", SCHEDULE], capsys)

    assert code == 2
    assert "--faults: no effect with --target" in err
