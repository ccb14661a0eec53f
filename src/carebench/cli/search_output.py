"""What `tune` and `capacity` share: the runs' inputs, progress lines and the outputs."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Literal

from rich.console import Console

from carebench.cli.loadtest import LoadTarget, check_client_tls, check_setup_applies
from carebench.cli.options import from_args, server_setup
from carebench.loadgen.tls import ClientTLSConfig
from carebench.report.files import write_atomically
from carebench.server.setup import ServerSetup
from carebench.tuning.config import SearchOutput, TrialSettings


def run_inputs(
    args: argparse.Namespace,
) -> tuple[TrialSettings, ServerSetup, LoadTarget, ClientTLSConfig]:
    """The trial settings, the servers' setup, what to drive and the client's TLS, checked
    together as loadtest checks them."""
    trials = from_args(TrialSettings, args)
    setup = server_setup(args)
    target = from_args(LoadTarget, args)
    check_setup_applies(target, setup)
    tls = from_args(ClientTLSConfig, args)
    check_client_tls(tls, target, setup)
    return trials, setup, target, tls


def say(line: str) -> None:
    """Progress on stderr, one line each, never wrapped (stdout may carry --json)."""
    print(line, file=sys.stderr, flush=True)


def emit(document: Any, outputs: SearchOutput, kind: Literal["tune", "capacity"]) -> None:
    """Write the search's document where asked (--output, --png, --html), then print it: as
    JSON with --json, otherwise as the terminal table. The report modules (matplotlib among
    them) are imported only when an output needs them."""
    text = json.dumps(document, indent=2)
    if outputs.output:
        write_atomically(outputs.output, text + "\n")
    if outputs.png:
        from carebench.report import tuning_plots

        write_atomically(outputs.png, getattr(tuning_plots, f"{kind}_png")(document))
    if outputs.html:
        from carebench.report import tuning

        getattr(tuning, f"write_{kind}_html")(document, outputs.html)
    if outputs.json:
        sys.stdout.write(text + "\n")
    else:
        from carebench.report import tuning

        width = None if sys.stdout.isatty() else 160
        getattr(tuning, f"print_{kind}")(document, Console(highlight=False, width=width))
