"""loadtest and sweep: settings forwarded to servers, and combinations that would be ignored."""

from __future__ import annotations

import os

import pytest

from carebench.cli import build_parser
from carebench.cli.loadtest import build_plan
from carebench.cli.sweep import build as build_sweep
from carebench.errors import ConfigError
from carebench.loadgen.runner import run_plan


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No CAREBENCH_* variable of the outer environment leaks into a test."""
    for name in list(os.environ):
        if name.startswith("CAREBENCH_"):
            monkeypatch.delenv(name)


def plan_of(*argv: str):
    return build_plan(build_parser().parse_args(["loadtest", *argv]))


def test_server_flags_reach_the_started_servers() -> None:
    """Pattern, database and resilience flags are forwarded, in their canonical form."""
    plan = plan_of("--workers", "3", "--min-latency", "20ms", "--retries", "2", "--seed", "5")
    args = plan.server_args

    assert args[args.index("--workers") + 1] == "3"
    assert args[args.index("--min-latency") + 1] == "0.02s"
    assert args[args.index("--retries") + 1] == "2"
    assert plan.load.seed == 5


def test_target_refuses_server_flags_it_would_ignore() -> None:
    """--target with --workers names the ignored flag instead of silently dropping it."""
    with pytest.raises(ConfigError, match=r"--workers.*no effect with --target"):
        plan_of("--target", "http://127.0.0.1:9", "--workers", "3")


def test_target_accepts_the_seed_which_shapes_the_load() -> None:
    """--seed still picks the ids and priorities the load generator sends."""
    plan = plan_of("--target", "http://127.0.0.1:9", "--seed", "3")

    assert (plan.mode, plan.load.seed) == ("target", 3)


def test_inprocess_refuses_a_server_choice() -> None:
    """--server granian means nothing without HTTP: say so rather than ignore it."""
    with pytest.raises(ConfigError, match="--server"):
        plan_of("--mode", "inprocess", "--server", "granian")


def test_inprocess_applies_the_circuit_breaker() -> None:
    """In-process runs wrap the backend too: a failing database trips the breaker (503s)."""
    plan = plan_of(
        "--mode", "inprocess", "--pattern", "naive", "--requests", "60", "--concurrency", "1",
        "--min-latency", "0", "--max-latency", "0", "--error-rate", "1", "--db-profile", "ideal",
        "--circuit-breaker", "--breaker-threshold", "2", "--breaker-reset", "60",
    )  # fmt: skip
    (result,) = run_plan(plan)

    assert result["outcomes"]["backend_error"] == 2
    assert result["rejected_requests"] == 58


def test_sweep_needs_exactly_one_axis() -> None:
    """Neither or both of --concurrency and --rate is a ConfigError naming both."""
    for argv in ([], ["--concurrency", "1,2", "--rate", "5"]):
        with pytest.raises(ConfigError, match=r"--concurrency LEVELS.*--rate LEVELS"):
            build_sweep(build_parser().parse_args(["sweep", *argv]))


def test_sweep_uses_connections_and_warmup_for_its_load() -> None:
    """A sweep's load takes --connections as its connection cap and its own warm-up."""
    argv = ["sweep", "--rate", "10,20", "--connections", "7", "--warmup", "0", "--limit", "4"]
    plan, sweep = build_sweep(build_parser().parse_args(argv))

    assert (sweep.axis, sweep.levels) == ("rate", [10.0, 20.0])
    assert (plan.load.concurrency, plan.load.warmup) == (7, 0.0)
    assert plan.setup.patterns.limit == 4
