"""`carebench sweep`: every pattern at each level of offered load, with peaks and knees."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rich.console import Console

from carebench.cli.loadtest import LoadTarget, check_client_tls, selected_patterns
from carebench.cli.options import (
    OutputFiles,
    add_serve_settings,
    add_settings,
    from_args,
    server_setup,
)
from carebench.loadgen.config import CLIENT_SETTINGS, LoadConfig, SweepConfig
from carebench.loadgen.runner import RunPlan
from carebench.loadgen.sweep import run_sweep
from carebench.loadgen.tls import INSECURE_WARNING, ClientTLSConfig
from carebench.report.files import write_atomically
from carebench.report.sweep import print_sweep
from carebench.report.terminal import BarProgress


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "sweep",
        help="run each pattern at several load levels and plot throughput, p99 and rejections",
        description="Each level is a separate run against a fresh server: closed loop with "
        "--concurrency N clients, or open loop at --rate R arrivals per second.",
    )
    add_settings(parser, SweepConfig, "levels")
    add_settings(parser, LoadTarget, "patterns", only=("pattern",))
    add_settings(parser, LoadConfig, "clients", only=CLIENT_SETTINGS)
    add_serve_settings(parser, forwarded_only=True)
    add_settings(parser, ClientTLSConfig, "TLS client (servers started with TLS)")
    add_settings(parser, OutputFiles, "output", only=("json", "output", "html", "png"))
    parser.set_defaults(run=run)


def build(args: argparse.Namespace) -> tuple[RunPlan, SweepConfig]:
    sweep = from_args(SweepConfig, args)
    setup = server_setup(args)
    load = from_args(
        LoadConfig, args, concurrency=sweep.connections, warmup=sweep.warmup,
        seed=setup.database.seed,
    )  # fmt: skip
    patterns = from_args(LoadTarget, args)
    tls = from_args(ClientTLSConfig, args)
    check_client_tls(tls, patterns, setup)
    plan = RunPlan(patterns=selected_patterns(patterns.pattern), load=load, setup=setup, tls=tls)
    return plan, sweep


def run(args: argparse.Namespace) -> int:
    plan, config = build(args)
    outputs = from_args(OutputFiles, args)
    quiet = outputs.json or not sys.stderr.isatty()
    progress = None if quiet else BarProgress(Console(stderr=True))
    if plan.tls.insecure:
        print(INSECURE_WARNING, file=sys.stderr, flush=True)
    sweep = run_sweep(plan, config.axis, config.levels, config.duration, progress)
    text = json.dumps(sweep, indent=2)
    if outputs.output:
        write_atomically(outputs.output, text + "\n")
    if outputs.png:
        from carebench.report.plots import sweep_png

        write_atomically(outputs.png, sweep_png(sweep))
    if outputs.html:
        from carebench.report.html import write_sweep_html

        write_sweep_html(sweep, outputs.html)
    if outputs.json:
        sys.stdout.write(text + "\n")
    else:
        width = None if sys.stdout.isatty() else 160
        print_sweep(sweep, Console(highlight=False, width=width))
    return 130 if sweep["interrupted"] else 0
