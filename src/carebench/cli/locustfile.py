"""`carebench locustfile`: print the path of the shipped locustfile (for `locust -f`)."""

from __future__ import annotations

import argparse
from typing import Any

from carebench.locust import LOCUSTFILE


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "locustfile",
        help="print the path of carebench's locustfile, for distributed load with Locust",
        description="Print the path of the locustfile shipped with carebench: "
        "`locust -f $(carebench locustfile) --host URL ...` drives a carebench server from "
        "Locust workers on several machines and writes results `carebench report` reads "
        "(docs/locust.md). Locust itself is the optional extra: pip install 'carebench[locust]'.",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    print(LOCUSTFILE)
    return 0
