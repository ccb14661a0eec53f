"""`carebench loadtest`: drive one server per pattern over real HTTP and compare them."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Any

from rich.console import Console

from carebench.cli.options import (
    OutputFiles,
    add_serve_settings,
    add_settings,
    from_args,
    server_setup,
)
from carebench.errors import ConfigError
from carebench.loadgen.client import parse_url
from carebench.loadgen.config import MODES, LoadConfig
from carebench.loadgen.runner import RunPlan, run_plan
from carebench.loadgen.tls import INSECURE_WARNING, ClientTLSConfig
from carebench.patterns.base import PATTERNS
from carebench.registry import check_choice
from carebench.report.export import write_outputs
from carebench.report.terminal import BarProgress, print_report
from carebench.server.setup import ServerSetup
from carebench.settings import setting

#: Server settings that also shape the load itself, so they mean something with --target.
LOAD_SHAPING_FLAGS = ("--seed",)


@dataclass(frozen=True, slots=True)
class LoadTarget:
    """What a load test drives: servers it starts per pattern, a running server, or the
    patterns called in-process."""

    pattern: str = setting(
        "all",
        "--pattern",
        f"all, or comma-separated pattern names ({', '.join(PATTERNS)})",
        metavar="all|NAME[,NAME...]",
    )
    target: str | None = setting(
        None,
        "--target",
        "drive this already-running server instead of starting one",
        metavar="URL",
    )
    mode: str = setting(
        "http",
        "--mode",
        "http: real servers over HTTP; inprocess: call the patterns directly",
        choices=MODES,
    )

    def __post_init__(self) -> None:
        check_choice("--mode", "mode", self.mode, MODES)
        if self.target and self.mode == "inprocess":
            raise ConfigError(
                "--target drives a server over HTTP; it cannot be combined with "
                "--mode inprocess. Remove one of them."
            )
        if self.target:
            parse_url(self.target)
        selected_patterns(self.pattern)


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "loadtest",
        help="load-test every pattern over real HTTP and compare them",
        description="Start `carebench serve` per pattern (or use --target / --mode inprocess), "
        "drive it, and compare throughput, latency, errors and rejections.",
    )
    add_settings(parser, LoadTarget, "what to drive")
    add_settings(parser, LoadConfig, "load")
    add_serve_settings(parser, forwarded_only=True)
    add_settings(parser, ClientTLSConfig, "TLS client (https:// targets, servers started with TLS)")
    add_settings(parser, OutputFiles, "output", only=("json", "output", "csv", "html"))
    parser.set_defaults(run=run)


def selected_patterns(spec: str) -> list[str]:
    if spec == "all":
        return PATTERNS.names()
    names = [name.strip() for name in spec.split(",") if name.strip()]
    if not names:
        raise ConfigError("--pattern: give all or at least one pattern name")
    return [PATTERNS.check(name) for name in names]


def check_setup_applies(target: LoadTarget, setup: ServerSetup) -> None:
    """Refuse server settings the chosen mode would silently ignore."""
    if target.target:
        ignored = [flag for flag in setup.changed_flags() if flag not in LOAD_SHAPING_FLAGS]
        if ignored:
            raise ConfigError(
                f"{', '.join(ignored)}: no effect with --target (that server runs with its "
                "own settings). Remove them, or drop --target to start servers here."
            )
    if target.mode == "inprocess" and setup.server.server != ServerSetup().server.server:
        raise ConfigError(
            "--server chooses the HTTP server; --mode inprocess calls the patterns without "
            "one. Remove one of them."
        )


def check_client_tls(tls: ClientTLSConfig, target: LoadTarget, setup: ServerSetup) -> None:
    """Refuse TLS client settings nothing uses, and servers that would refuse the client."""
    if target.mode == "inprocess":
        tls.check_used(False, "--mode inprocess sends no HTTP")
    elif target.target:
        tls.check_used(parse_url(target.target).tls, "the --target is http://")
    else:
        server = setup.server
        tls.check_used(
            server.tls, "the servers started speak plain HTTP (add --tls-cert/--tls-key)"
        )
        if server.tls_client_ca is not None and tls.client_cert is None:
            raise ConfigError(
                "--tls-client-ca: the servers started require a client certificate; add "
                "--client-cert FILE --client-key FILE"
            )


def build_plan(args: argparse.Namespace) -> RunPlan:
    setup = server_setup(args)
    target = from_args(LoadTarget, args)
    load = from_args(LoadConfig, args, seed=setup.database.seed)
    tls = from_args(ClientTLSConfig, args)
    check_setup_applies(target, setup)
    check_client_tls(tls, target, setup)
    if target.mode == "inprocess" and load.generators > 1:
        raise ConfigError(
            "--generators runs client processes that speak HTTP; --mode inprocess calls the "
            "patterns in this process. Remove one of them."
        )
    return RunPlan(
        patterns=selected_patterns(target.pattern),
        load=load,
        mode="target" if target.target else target.mode,
        target=(target.target or "").rstrip("/") or None,
        setup=setup,
        tls=tls,
    )


def run(args: argparse.Namespace) -> int:
    try:
        plan = build_plan(args)
    except ValueError as bad:
        raise ConfigError(str(bad)) from None
    outputs = from_args(OutputFiles, args)
    quiet = outputs.json or not sys.stderr.isatty()
    err = Console(stderr=True)
    if plan.tls.insecure:
        print(INSECURE_WARNING, file=sys.stderr, flush=True)
    results = run_plan(plan, None if quiet else BarProgress(err))
    write_outputs(results, json_path=outputs.output, csv_path=outputs.csv, html_path=outputs.html)
    if outputs.json:
        from carebench.report.export import to_json

        sys.stdout.write(to_json(results) + "\n")
    else:
        # Not a terminal (a pipe, a CI log): wide enough that the table is not truncated.
        width = None if sys.stdout.isatty() else 160
        print_report(results, Console(highlight=False, width=width))
    if plan.tls.insecure:
        print(INSECURE_WARNING, file=sys.stderr, flush=True)  # again, below the report
    interrupted = any(result["interrupted"] for result in results)
    return 130 if interrupted else 0
