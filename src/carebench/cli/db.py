"""`carebench db`: load synthetic patients into a real database (and manage a local one)."""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass
from typing import Any

from carebench.backends.base import backend_class
from carebench.backends.config import BackendConfig
from carebench.backends.dataset import DEFAULT_PATIENTS
from carebench.cli.options import add_settings, from_args
from carebench.errors import ConfigError
from carebench.settings import INT, setting


@dataclass(frozen=True, slots=True)
class SeedConfig:
    """How many synthetic patients to load."""

    patients: int = setting(
        DEFAULT_PATIENTS,
        "--patients",
        "synthetic patients to load (ids P00000 on, plus the example id P12345)",
        INT,
    )

    def __post_init__(self) -> None:
        if self.patients < 1:
            raise ConfigError(f"--patients ({self.patients}) must be >= 1")


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "db",
        help="seed a real database with synthetic patients, or run a throwaway PostgreSQL",
        description="Work with the real databases carebench can serve from.",
    )
    actions = parser.add_subparsers(dest="db_command", metavar="ACTION", parser_class=type(parser))
    actions.required = True
    seed = actions.add_parser(
        "seed",
        help="load synthetic patients (deterministic and idempotent)",
        description="Create the schema if needed and load synthetic patients; running it "
        "again loads nothing twice.",
    )
    add_settings(seed, BackendConfig, "backend")
    add_settings(seed, SeedConfig, "data")
    seed.set_defaults(run=run_seed)


def run_seed(args: argparse.Namespace) -> int:
    backend = from_args(BackendConfig, args)
    config = from_args(SeedConfig, args)
    loaded = asyncio.run(backend_class(backend.backend).seed(backend, config.patients))
    print(f"{backend.backend}: {loaded} patients present after seeding")
    return 0
