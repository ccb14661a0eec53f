"""`carebench serve`: the patient API behind one concurrency pattern."""

from __future__ import annotations

import argparse
from typing import Any

from carebench.cli.options import (
    add,
    add_database_options,
    add_pattern_options,
    add_resilience_options,
    add_server_options,
    database_config,
    pattern_config,
    resilience_config,
    server_config,
)
from carebench.patterns.base import check_pattern_name, pattern_names
from carebench.server.runner import serve


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "serve",
        help="run the patient-records API through a concurrency pattern",
        description="Run the patient-records API. Every flag can also be set through the "
        "environment variable named in its help; flags win.",
    )
    add(
        parser,
        "--pattern",
        default="workerpool",
        metavar="{" + ",".join(pattern_names()) + "}",
        help="concurrency pattern (default workerpool)",
    )
    parser.add_argument("--quiet", action="store_true", help="no start-up banner")
    parser.add_argument(
        "--enable-profiling",
        action="store_true",
        help="serve GET /debug/profile?seconds=N (loopback clients only)",
    )
    add_server_options(parser)
    add_pattern_options(parser)
    add_resilience_options(parser)
    add_database_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    pattern = check_pattern_name(args.pattern)
    return serve(
        pattern,
        server_config(args),
        pattern_config(args),
        database_config(args),
        resilience_config(args),
    )
