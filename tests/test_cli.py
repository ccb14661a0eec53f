"""The `carebench` command line: readable errors with exit 2, env defaults, durations."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from typing import Any

import pytest

import carebench
from carebench.backends.simulator import SimulatorConfig
from carebench.cli import build_parser, main
from carebench.cli import serve as serve_command
from carebench.cli.options import from_args, server_setup
from carebench.cli.serve import ServeChoice
from carebench.patterns.base import PatternConfig
from carebench.resilience.config import ResilienceConfig
from carebench.server.setup import ServerSetup
from carebench.settings import milliseconds, seconds


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No CAREBENCH_* variable of the outer environment leaks into a test."""
    for name in list(os.environ):
        if name.startswith("CAREBENCH_"):
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def served(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """Replace the real server so a command that wrongly validates returns instead of serving."""
    calls: list[tuple[Any, ...]] = []

    def fake_serve(*args: Any) -> int:
        calls.append(args)
        return 0

    monkeypatch.setattr(serve_command, "serve", fake_serve)
    return calls


def run_cli(argv: Sequence[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run `carebench argv` in-process; argparse's SystemExit counts as a return code."""
    try:
        code: Any = main(list(argv))
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["serve", "--pattern", "nope"], "--pattern"),
        (["serve", "--min-latency", "120", "--max-latency", "100"], "--min-latency"),
        (["serve", "--error-rate", "1.5"], "--error-rate"),
        (["serve", "--workers", "0"], "--workers"),
        (["serve", "--queue-size", "-1"], "--queue-size"),
        (["serve", "--port", "70000"], "--port"),
        (["serve", "--port", "abc"], "--port"),
        (["serve", "--db-profile", "weird"], "--db-profile"),
        (["serve", "--min-latency", "fast"], "--min-latency"),
        (["serve", "--workers", "many"], "--workers"),
        (["serve", "--drain-timeout", "-1"], "--drain-timeout"),
        (["serve", "--read-timeout", "0"], "--read-timeout"),
        (["serve", "--max-header-size", "4096"], "--max-header-size"),
        (["serve", "--server", "nginx"], "--server"),
        (["serve", "--log-level", "loud"], "--log-level"),
    ],
)
def test_invalid_input_exits_2_with_a_readable_error(
    argv: list[str],
    option: str,
    capsys: pytest.CaptureFixture[str],
    served: list[tuple[Any, ...]],
) -> None:
    """Bad values exit 2 with `error: ...` naming the option, no traceback, no server."""
    code, out, err = run_cli(argv, capsys)

    assert code == 2
    assert err.startswith("error:")
    assert option in err
    assert "Traceback" not in out + err
    assert served == []


@pytest.mark.parametrize(
    ("argv", "suggestion"),
    [
        (["serve", "--pattern", "workerpol"], "did you mean 'workerpool'?"),
        (["serve", "--log-level", "warn"], "did you mean 'warning'?"),
        (["serve", "--server", "granain"], "did you mean 'granian'?"),
    ],
)
def test_unknown_names_suggest_the_closest(
    argv: list[str], suggestion: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A misspelt name is refused with the closest valid one in the message."""
    code, _, err = run_cli(argv, capsys)

    assert code == 2
    assert suggestion in err


def test_min_latency_error_states_the_rule(capsys: pytest.CaptureFixture[str]) -> None:
    """The latency error shows both values and the rule, as the design asks."""
    _, _, err = run_cli(["serve", "--min-latency", "120", "--max-latency", "100"], capsys)

    assert "--min-latency (120) must be <= --max-latency (100)" in err


def test_env_variable_sets_the_default(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """CAREBENCH_WORKERS=0 is validated like --workers 0, and the error names --workers."""
    monkeypatch.setenv("CAREBENCH_WORKERS", "0")

    code, _, err = run_cli(["serve"], capsys)

    assert code == 2
    assert err.startswith("error:")
    assert "--workers" in err


def test_env_values_are_converted_like_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    """Environment defaults go through the option's type (int, duration)."""
    monkeypatch.setenv("CAREBENCH_WORKERS", "7")
    monkeypatch.setenv("CAREBENCH_MIN_LATENCY", "20ms")

    args = build_parser().parse_args(["serve"])

    assert from_args(PatternConfig, args).workers == 7
    assert from_args(SimulatorConfig, args).min_latency == 0.02


def test_flag_overrides_env_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """A flag wins over the CAREBENCH_* variable for the same option."""
    monkeypatch.setenv("CAREBENCH_WORKERS", "7")
    monkeypatch.setenv("CAREBENCH_PATTERN", "naive")

    args = build_parser().parse_args(["serve", "--workers", "3", "--pattern", "optimized"])

    assert from_args(PatternConfig, args).workers == 3
    assert from_args(ServeChoice, args).pattern == "optimized"


def test_defaults_match_the_reference() -> None:
    """Without flags or env: workerpool, port 8080, 20 workers, queue 100, 50-100 ms, 5 %."""
    args = build_parser().parse_args(["serve"])

    setup = server_setup(args)
    assert from_args(ServeChoice, args).pattern == "workerpool"
    assert setup.server.port == 8080
    assert (setup.patterns.workers, setup.patterns.queue_size) == (20, 100)
    database = setup.effective_database()
    assert database.latency_range == (0.05, 0.1)
    assert database.error_rate == 0.05


def test_valid_command_hands_configs_to_the_server(
    capsys: pytest.CaptureFixture[str], served: list[tuple[Any, ...]]
) -> None:
    """A valid serve command builds the configs from its flags and starts the server once."""
    argv = ["serve", "--pattern", "naive", "--port", "0", "--workers", "4", "--min-latency", "10"]
    argv += ["--max-latency", "10", "--error-rate", "0", "--db-profile", "ideal"]

    code, _, err = run_cli(argv, capsys)

    assert code == 0
    assert err == ""
    assert len(served) == 1
    pattern, setup = served[0]
    assert pattern == "naive"
    assert isinstance(setup, ServerSetup)
    assert setup.server.port == 0
    assert setup.patterns == PatternConfig(workers=4, queue_size=100)
    database = setup.database
    assert (database.min_latency, database.max_latency) == (0.01, 0.01)
    assert (database.error_rate, database.profile) == (0.0, "ideal")
    assert setup.resilience == ResilienceConfig()


@pytest.mark.parametrize("text", ["50", "50ms", "0.05s", " 50 ms "])
def test_milliseconds_accepts_ms_and_s(text: str) -> None:
    """Durations without a unit are milliseconds; `ms` and `s` suffixes are honoured."""
    assert milliseconds(text) == 0.05


@pytest.mark.parametrize("text", ["5", "5s", "5000ms"])
def test_seconds_accepts_s_and_ms(text: str) -> None:
    """Durations without a unit are seconds for `seconds`."""
    assert seconds(text) == 5.0


@pytest.mark.parametrize("text", ["", "fast", "-5", "5m", "1e3", "ms", "5 ms s"])
def test_bad_duration_is_rejected(text: str) -> None:
    """Malformed or negative durations raise ArgumentTypeError quoting the input."""
    with pytest.raises(argparse.ArgumentTypeError, match="invalid duration"):
        milliseconds(text)
    with pytest.raises(argparse.ArgumentTypeError, match="invalid duration"):
        seconds(text)


def test_version_prints_the_version(capsys: pytest.CaptureFixture[str]) -> None:
    """`carebench --version` prints the package version and exits 0."""
    code, out, _ = run_cli(["--version"], capsys)

    assert code == 0
    assert out.strip() == f"carebench {carebench.__version__}"


def test_missing_command_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    """Running `carebench` with no command exits 2 with an `error:` line."""
    code, _, err = run_cli([], capsys)

    assert code == 2
    assert err.startswith("error:")
    assert "Traceback" not in err
