"""`carebench serve`: the patient API behind one concurrency pattern."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from carebench.cli.options import add_serve_settings, add_settings, from_args, server_setup
from carebench.patterns.base import PATTERNS
from carebench.server.runner import serve
from carebench.settings import setting


@dataclass(frozen=True, slots=True)
class ServeChoice:
    """Which pattern the server runs."""

    pattern: str = setting("workerpool", "--pattern", "concurrency pattern", choices=PATTERNS.names)

    def __post_init__(self) -> None:
        PATTERNS.check(self.pattern)


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "serve",
        help="run the patient-records API through a concurrency pattern",
        description="Run the patient-records API. Every flag can also be set through the "
        "environment variable named in its help; flags win.",
    )
    add_settings(parser, ServeChoice, "what to serve")
    add_serve_settings(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    choice = from_args(ServeChoice, args)
    return serve(choice.pattern, server_setup(args))
