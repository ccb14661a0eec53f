"""`carebench loadtest`: drive one server per pattern over real HTTP and compare them."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from rich.console import Console

from carebench.cli.options import (
    add_client_options,
    add_forwarded_server_options,
    database_config,
    forwarded_server_flags,
    pattern_config,
    seconds,
)
from carebench.errors import ConfigError
from carebench.loadgen.client import parse_url
from carebench.loadgen.config import ARRIVALS, LoadConfig
from carebench.loadgen.runner import RunPlan, run_plan
from carebench.patterns.base import check_pattern_name, pattern_names
from carebench.report.export import write_outputs
from carebench.report.terminal import BarProgress, print_report


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "loadtest",
        help="load-test every pattern over real HTTP and compare them",
        description="Start `carebench serve` per pattern (or use --target / --mode inprocess), "
        "drive it, and compare throughput, latency, errors and rejections.",
    )
    add_load_options(parser)
    add_output_options(parser)
    parser.set_defaults(run=run)


def add_load_options(parser: argparse.ArgumentParser) -> None:
    load = parser.add_argument_group("load")
    load.add_argument(
        "--pattern",
        default="all",
        help=f"all, or one or more of {','.join(pattern_names())} (comma-separated)",
    )
    load.add_argument("--requests", type=int, default=1000, help="closed loop: requests in total")
    load.add_argument(
        "--concurrency",
        type=int,
        default=100,
        help="closed loop: clients; open loop: max connections (default 100)",
    )
    load.add_argument("--rate", type=float, help="open loop: arrivals per second (with --duration)")
    load.add_argument(
        "--duration",
        type=seconds,
        help="seconds to send for (open loop; closed loop: instead of --requests)",
    )
    load.add_argument(
        "--arrivals",
        default="constant",
        choices=ARRIVALS,
        help="open loop: spacing of arrivals (default constant)",
    )
    load.add_argument(
        "--warmup",
        type=seconds,
        default=0.0,
        help="seconds of load before measuring, excluded from statistics",
    )
    add_client_options(load)
    load.add_argument("--target", help="drive this already-running server instead of starting one")
    load.add_argument(
        "--mode",
        default="http",
        choices=("http", "inprocess"),
        help="http (default): real servers; inprocess: call the patterns directly",
    )
    add_forwarded_server_options(parser)


def add_output_options(parser: argparse.ArgumentParser) -> None:
    output = parser.add_argument_group("output")
    output.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    output.add_argument("--output", metavar="FILE", help="write the JSON results to FILE")
    output.add_argument("--csv", metavar="FILE", help="write a flat CSV table to FILE")
    output.add_argument("--html", metavar="FILE", help="write a self-contained HTML report")


def selected_patterns(spec: str) -> list[str]:
    if spec == "all":
        return pattern_names()
    names = [name.strip() for name in spec.split(",") if name.strip()]
    if not names:
        raise ConfigError("--pattern: give all or at least one pattern name")
    return [check_pattern_name(name) for name in names]


def build_plan(args: argparse.Namespace) -> RunPlan:
    load = LoadConfig(
        requests=args.requests,
        concurrency=args.concurrency,
        rate=args.rate,
        duration=args.duration,
        arrivals=args.arrivals,
        timeout=args.timeout,
        warmup=args.warmup,
        ids=args.ids,
        priorities=args.priorities,
        honor_retry_after=args.honor_retry_after,
        seed=args.seed,
    )
    if args.target and args.mode == "inprocess":
        raise ConfigError(
            "--target drives a server over HTTP; it cannot be combined with "
            "--mode inprocess. Remove one of them."
        )
    if args.target:
        parse_url(args.target)
    database = database_config(args)
    patterns = pattern_config(args)
    return RunPlan(
        patterns=selected_patterns(args.pattern),
        load=load,
        mode="target" if args.target else args.mode,
        target=(args.target or "").rstrip("/") or None,
        server_args=forwarded_server_flags(args),
        pattern_config=patterns,
        database=database,
        request_timeout=args.request_timeout,
        class_timeouts={"critical": args.critical_timeout, "batch": args.batch_timeout},
    )


def run(args: argparse.Namespace) -> int:
    try:
        plan = build_plan(args)
    except ValueError as bad:
        raise ConfigError(str(bad)) from None
    quiet = args.json or not sys.stderr.isatty()
    err = Console(stderr=True)
    results = run_plan(plan, None if quiet else BarProgress(err))
    write_outputs(results, json_path=args.output, csv_path=args.csv, html_path=args.html)
    if args.json:
        from carebench.report.export import to_json

        sys.stdout.write(to_json(results) + "\n")
    else:
        # Not a terminal (a pipe, a CI log): wide enough that the table is not truncated.
        width = None if sys.stdout.isatty() else 160
        print_report(results, Console(highlight=False, width=width))
    interrupted = any(result["interrupted"] for result in results)
    return 130 if interrupted else 0
