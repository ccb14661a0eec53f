"""`carebench sweep`: every pattern at each level of offered load, with peaks and knees."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from carebench.cli.loadtest import selected_patterns
from carebench.cli.options import (
    add_client_options,
    add_forwarded_server_options,
    forwarded_server_flags,
    seconds,
)
from carebench.errors import ConfigError
from carebench.loadgen.config import LoadConfig
from carebench.loadgen.runner import RunPlan
from carebench.loadgen.sweep import run_sweep
from carebench.report.sweep import print_sweep
from carebench.report.terminal import BarProgress


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "sweep",
        help="run each pattern at several load levels and plot throughput, p99 and rejections",
        description="Each level is a separate run against a fresh server: closed loop with "
        "--concurrency N clients, or open loop at --rate R arrivals per second.",
    )
    levels = parser.add_mutually_exclusive_group(required=True)
    levels.add_argument("--concurrency", type=level_list, help="closed-loop levels, e.g. 10,50,100")
    levels.add_argument(
        "--rate", type=level_list, help="open-loop levels in req/s, e.g. 50,100,200"
    )
    parser.add_argument("--pattern", default="all", help="all, or comma-separated pattern names")
    parser.add_argument("--duration", type=seconds, default=5.0, help="seconds per level (5)")
    parser.add_argument("--warmup", type=seconds, default=1.0, help="warm-up per level (1 s)")
    parser.add_argument(
        "--connections",
        type=int,
        default=1000,
        help="open loop: max connections per run (default 1000)",
    )
    add_client_options(parser)
    add_forwarded_server_options(parser)
    output = parser.add_argument_group("output")
    output.add_argument("--json", action="store_true", help="print the sweep as JSON on stdout")
    output.add_argument("--output", metavar="FILE", help="write the sweep JSON to FILE")
    output.add_argument("--html", metavar="FILE", help="write an HTML report with the plots")
    output.add_argument("--png", metavar="FILE", help="write the sweep plot as a PNG")
    parser.set_defaults(run=run)


def level_list(text: str) -> list[float]:
    """`10,50,100` -> [10.0, 50.0, 100.0]: positive and strictly increasing."""
    try:
        levels = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 10,50,100, got {text!r}") from None
    if not levels or any(level <= 0 for level in levels):
        raise argparse.ArgumentTypeError(f"levels must be positive numbers, got {text!r}")
    if levels != sorted(set(levels)):
        raise argparse.ArgumentTypeError(f"levels must increase, got {text!r}")
    return levels


def build(args: argparse.Namespace) -> tuple[RunPlan, str, list[float]]:
    axis = "concurrency" if args.concurrency else "rate"
    levels: list[float] = args.concurrency or args.rate
    if axis == "concurrency" and any(level != int(level) for level in levels):
        raise ConfigError("sweep --concurrency: levels must be whole numbers of clients")
    if args.connections < 1:
        raise ConfigError(f"--connections ({args.connections}) must be >= 1")
    load = LoadConfig(
        concurrency=args.connections,
        timeout=args.timeout,
        warmup=args.warmup,
        ids=args.ids,
        priorities=args.priorities,
        honor_retry_after=args.honor_retry_after,
        seed=args.seed,
    )
    plan = RunPlan(
        patterns=selected_patterns(args.pattern),
        load=load,
        server_args=forwarded_server_flags(args),
        request_timeout=args.request_timeout,
    )
    return plan, axis, levels


def run(args: argparse.Namespace) -> int:
    plan, axis, levels = build(args)
    quiet = args.json or not sys.stderr.isatty()
    sweep = run_sweep(
        plan, axis, levels, args.duration, None if quiet else BarProgress(Console(stderr=True))
    )
    text = json.dumps(sweep, indent=2)
    if args.output:
        Path(args.output).write_text(text + "\n", encoding="utf-8")
    if args.png:
        from carebench.report.plots import sweep_png

        Path(args.png).write_bytes(sweep_png(sweep))
    if args.html:
        from carebench.report.html import write_sweep_html

        write_sweep_html(sweep, args.html)
    if args.json:
        sys.stdout.write(text + "\n")
    else:
        width = None if sys.stdout.isatty() else 160
        print_sweep(sweep, Console(highlight=False, width=width))
    return 130 if sweep["interrupted"] else 0
