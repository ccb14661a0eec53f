"""`carebench db`: load synthetic patients into a real database (and manage a local one)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from carebench.backends.base import backend_class
from carebench.backends.config import BackendConfig
from carebench.backends.dataset import DEFAULT_PATIENTS
from carebench.backends.pgcluster import DATABASE, default_directory, down, up
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


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """Where `db up` keeps its throwaway PostgreSQL cluster."""

    directory: str | None = setting(
        None,
        "--dir",
        "the cluster's directory (default: carebench/postgres in the user cache directory; "
        "as root, in the postgres user's, since the cluster runs as that user)",
        metavar="DIR",
    )

    def path(self) -> Path:
        return Path(self.directory).resolve() if self.directory else default_directory()


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
    up = actions.add_parser(
        "up",
        help="create, start and seed a throwaway local PostgreSQL; prints its DSN",
        description="initdb + pg_ctl (from PATH or /usr/lib/postgresql/*/bin) into --dir, "
        "listening on 127.0.0.1 (a free port) and a unix socket in --dir, trust "
        "authentication on loopback only; creates database carebench, seeds it and prints "
        "its DSN (also written to DIR/dsn). Running it again restarts and reseeds the same "
        "cluster.",
    )
    add_settings(up, ClusterConfig, "cluster")
    add_settings(up, SeedConfig, "data")
    up.set_defaults(run=run_up)
    down = actions.add_parser(
        "down",
        help="stop the throwaway PostgreSQL and remove its directory",
        description="pg_ctl stop -m fast, then remove --dir.",
    )
    add_settings(down, ClusterConfig, "cluster")
    down.set_defaults(run=run_down)


def run_seed(args: argparse.Namespace) -> int:
    backend = from_args(BackendConfig, args)
    config = from_args(SeedConfig, args)
    loaded = asyncio.run(backend_class(backend.backend).seed(backend, config.patients))
    print(f"{backend.backend}: {loaded} patients present after seeding")
    return 0


def run_up(args: argparse.Namespace) -> int:
    cluster = from_args(ClusterConfig, args)
    directory = cluster.path()
    started = up(directory, from_args(SeedConfig, args).patients)
    stop = "carebench db down" + (f" --dir {directory}" if cluster.directory else "")
    print(
        f"PostgreSQL running in {directory}: database {DATABASE}, {started.patients} patients\n"
        f"  use it:  carebench loadtest --backend postgres --dsn {started.dsn}\n"
        f"  stop it: {stop}",
        file=sys.stderr,
    )
    print(started.dsn)
    return 0


def run_down(args: argparse.Namespace) -> int:
    directory = from_args(ClusterConfig, args).path()
    if down(directory):
        print(f"stopped PostgreSQL and removed {directory}")
    else:
        print(f"no cluster in {directory}: nothing to stop")
    return 0
