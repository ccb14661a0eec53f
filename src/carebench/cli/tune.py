"""`carebench tune`: the static setting of a pattern that gives the most goodput within a p99
target, the yardstick the self-tuning patterns are measured against."""

from __future__ import annotations

import argparse
from typing import Any

from carebench.cli.loadtest import LoadTarget
from carebench.cli.options import add_serve_settings, add_settings, from_args
from carebench.cli.search_output import emit, run_inputs, say
from carebench.errors import ConfigError
from carebench.loadgen.config import CLIENT_SETTINGS, LoadConfig
from carebench.loadgen.runner import RunPlan
from carebench.loadgen.tls import INSECURE_WARNING, ClientTLSConfig
from carebench.patterns.base import PatternConfig
from carebench.tuning.config import SearchOutput, TrialSettings, TuneConfig
from carebench.tuning.runs import run_tune, tune_max_runs

#: The load settings a tune scenario takes from `loadtest` (duration and warm-up are its own).
SCENARIO_SETTINGS = ("concurrency", "rate", "arrivals", *CLIENT_SETTINGS)


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "tune",
        help="find the static setting of a pattern with the most goodput within a p99 target",
        description="Search one numeric pattern setting (--param limit=5..100) under one "
        "scenario (closed loop --concurrency N, or open loop --rate R): a geometric grid over "
        "the range, then midpoints next to the best, each candidate run --trials times on a "
        "fresh server. The best meets --p99 with the most goodput.",
    )
    add_settings(parser, TuneConfig, "search")
    add_settings(parser, TrialSettings, "runs")
    add_settings(parser, LoadTarget, "what to drive", only=("mode",))
    add_settings(parser, LoadConfig, "scenario", only=SCENARIO_SETTINGS)
    add_serve_settings(parser, forwarded_only=True)
    add_settings(parser, ClientTLSConfig, "TLS client (servers started with TLS)")
    add_settings(parser, SearchOutput, "output")
    parser.set_defaults(run=run)


def build(args: argparse.Namespace) -> tuple[RunPlan, TuneConfig, TrialSettings]:
    config = from_args(TuneConfig, args)
    trials, setup, target, tls = run_inputs(args)
    name = config.parameter.name
    if getattr(setup.patterns, name) != getattr(PatternConfig(), name):
        flag = config.parameter.flag
        raise ConfigError(f"{flag}: tune sets it from --param; remove {flag}")
    load = from_args(
        LoadConfig, args, duration=trials.duration, warmup=trials.warmup,
        seed=setup.database.seed,
    )  # fmt: skip
    assert config.pattern is not None
    return (
        RunPlan(patterns=[config.pattern], load=load, mode=target.mode, setup=setup, tls=tls),
        config,
        trials,
    )


def run(args: argparse.Namespace) -> int:
    plan, config, trials = build(args)
    outputs = from_args(SearchOutput, args)
    parameter = config.parameter
    runs = tune_max_runs(config, trials.trials)
    seconds = runs * (trials.duration + trials.warmup)
    say(
        f"tune {plan.patterns[0]} {parameter.flag} over {parameter.show(parameter.low)}.."
        f"{parameter.show(parameter.high)}: at most {config.grid.max_candidates} candidates x "
        f"{trials.trials} trials = {runs} runs of {trials.warmup:g}+{trials.duration:g} s "
        f"(~{seconds / 60:.1f} min plus server start-ups)"
    )
    if plan.tls.insecure:
        say(INSECURE_WARNING)
    document = run_tune(plan, config, trials.trials, say)
    emit(document, outputs, "tune")
    return 0
