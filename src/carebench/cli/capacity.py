"""`carebench capacity`: the highest open-loop arrival rate each pattern sustains within an
SLO ("how many requests per second can this instance take at my SLO?")."""

from __future__ import annotations

import argparse
from typing import Any

from carebench.cli.loadtest import (
    LoadTarget,
    selected_patterns,
)
from carebench.cli.options import add_serve_settings, add_settings, from_args
from carebench.cli.search_output import emit, run_inputs, say
from carebench.loadgen.config import CLIENT_SETTINGS, LoadConfig
from carebench.loadgen.runner import RunPlan
from carebench.loadgen.tls import INSECURE_WARNING, ClientTLSConfig
from carebench.tuning.config import CapacityConfig, SearchOutput, TrialSettings
from carebench.tuning.runs import run_capacity


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "capacity",
        help="find the highest arrival rate each pattern sustains within an SLO",
        description="Per pattern, open loop: double the rate from --start-rate until a rate "
        "misses the SLO, then bisect between the last passing and the first failing rate until "
        "they are within --precision. A rate passes when all its --trials runs (each on a "
        "fresh server) meet the SLO.",
    )
    add_settings(parser, CapacityConfig, "search")
    add_settings(parser, TrialSettings, "runs")
    add_settings(parser, LoadTarget, "what to drive", only=("pattern", "mode"))
    add_settings(parser, LoadConfig, "clients", only=("arrivals", *CLIENT_SETTINGS))
    add_serve_settings(parser, forwarded_only=True)
    add_settings(parser, ClientTLSConfig, "TLS client (servers started with TLS)")
    add_settings(parser, SearchOutput, "output")
    parser.set_defaults(run=run)


def build(args: argparse.Namespace) -> tuple[RunPlan, CapacityConfig, TrialSettings]:
    config = from_args(CapacityConfig, args)
    trials, setup, target, tls = run_inputs(args)
    load = from_args(
        LoadConfig, args, concurrency=config.connections, rate=config.start_rate,
        duration=trials.duration, warmup=trials.warmup, seed=setup.database.seed,
    )  # fmt: skip
    patterns = selected_patterns(target.pattern)
    return (
        RunPlan(patterns=patterns, load=load, mode=target.mode, setup=setup, tls=tls),
        config,
        trials,
    )


def run(args: argparse.Namespace) -> int:
    plan, config, trials = build(args)
    outputs = from_args(SearchOutput, args)
    probes = config.search.max_probes
    runs = probes * trials.trials * len(plan.patterns)
    say(
        f"capacity within {config.slo} (at most {config.errors:g}% refused or late) for "
        f"{', '.join(plan.patterns)}: at most {probes} probes x {trials.trials} trials per "
        f"pattern = {runs} runs of {trials.warmup:g}+{trials.duration:g} s"
    )
    if plan.tls.insecure:
        say(INSECURE_WARNING)
    document = run_capacity(plan, config, trials.trials, say)
    emit(document, outputs, "capacity")
    return 0
