"""`carebench calibrate`: fit the simulator's capacity model to a backend, real or simulated."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from carebench.backends.config import BackendConfig
from carebench.backends.simulator import SimulatorConfig
from carebench.calibrate.calibration import calibrate
from carebench.calibrate.config import CalibrationConfig
from carebench.calibrate.measure import LevelResult
from carebench.calibrate.terminal import print_calibration, progress_line
from carebench.cli.options import add_settings, from_args
from carebench.settings import SWITCH, setting


@dataclass(frozen=True, slots=True)
class CalibrationOutput:
    """Where a calibration goes besides the terminal."""

    json: bool = setting(False, "--json", "print the calibration as JSON on stdout", SWITCH)
    output: str | None = setting(
        None, "--output", "write the calibration as JSON to FILE", metavar="FILE"
    )
    png: str | None = setting(
        None,
        "--png",
        "write a plot of measured throughput and latency against the fitted curves to FILE",
        metavar="FILE",
    )


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "calibrate",
        help="measure a backend's latency against concurrency and fit the simulator to it",
        description="Drive the backend directly (no HTTP) with 1, 2, 4, ... queries at once, "
        "fit the Universal Scalability Law (single-query latency, contention sigma, coherency "
        "kappa) by least squares, and print the `carebench serve` flags that make the "
        "simulator behave like the backend.",
    )
    add_settings(parser, CalibrationConfig, "levels")
    add_settings(parser, BackendConfig, "backend")
    add_settings(parser, SimulatorConfig, "database (simulated, or injected into a real one)")
    add_settings(parser, CalibrationOutput, "output")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    config = from_args(CalibrationConfig, args)
    backend = from_args(BackendConfig, args)
    database = from_args(SimulatorConfig, args)
    outputs = from_args(CalibrationOutput, args)
    errors = Console(stderr=True, highlight=False)

    def progress(level: LevelResult) -> None:
        errors.print(progress_line(level))

    document = asyncio.run(calibrate(backend, database, config, None if outputs.json else progress))
    text = json.dumps(document, indent=2)
    if outputs.output:
        Path(outputs.output).write_text(text + "\n", encoding="utf-8")
    if outputs.png:
        from carebench.calibrate.plot import calibration_png

        Path(outputs.png).write_bytes(calibration_png(document))
    if outputs.json:
        sys.stdout.write(text + "\n")
    else:
        width = None if sys.stdout.isatty() else 160
        print_calibration(document, Console(highlight=False, width=width))
    return 0 if document["fit"] is not None else 1
