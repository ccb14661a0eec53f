"""Command-line options shared by the commands, with CAREBENCH_* environment defaults."""

from __future__ import annotations

import argparse
import os
import re
from typing import Any

from carebench.backends.simulator import PROFILES, SimulatorConfig
from carebench.patterns.base import PatternConfig
from carebench.server.config import LOG_LEVELS, ServerConfig

ENV_PREFIX = "CAREBENCH_"
_DURATION = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s)?\s*")


def env_default(dest: str, fallback: Any) -> Any:
    """`CAREBENCH_<DEST>` when set (argparse converts it like a flag value), else `fallback`."""
    return os.environ.get(ENV_PREFIX + dest.upper(), fallback)


def milliseconds(text: str) -> float:
    """A duration in ms: `50`, `50ms` or `0.05s`; returned in seconds."""
    match = _DURATION.fullmatch(text)
    if not match:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r} (e.g. 50, 50ms, 0.05s)")
    value, unit = float(match.group(1)), match.group(2) or "ms"
    return value if unit == "s" else value / 1000.0


def seconds(text: str) -> float:
    """A duration in seconds: `5`, `5s` or `500ms`."""
    match = _DURATION.fullmatch(text)
    if not match:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r} (e.g. 5, 5s, 500ms)")
    value, unit = float(match.group(1)), match.group(2) or "s"
    return value if unit == "s" else value / 1000.0


def add(group: Any, flag: str, *, default: Any, help: str, **kwargs: Any) -> None:
    """Add `flag` with its environment default and the variable's name in the help."""
    dest = flag.lstrip("-").replace("-", "_")
    env = ENV_PREFIX + dest.upper()
    group.add_argument(
        flag, dest=dest, default=env_default(dest, default), help=f"{help} [env {env}]", **kwargs
    )


def add_pattern_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("pattern")
    add(group, "--workers", type=int, default=20, help="worker tasks (default 20)")
    add(group, "--queue-size", type=int, default=100, help="bounded queue capacity (default 100)")


def add_database_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("simulated database")
    d = SimulatorConfig()
    add(
        group,
        "--min-latency",
        type=milliseconds,
        default="50",
        help="minimum query latency in ms (default 50)",
    )
    add(
        group,
        "--max-latency",
        type=milliseconds,
        default="100",
        help="maximum query latency in ms (default 100)",
    )
    add(
        group,
        "--error-rate",
        type=float,
        default=d.error_rate,
        help="probability a query fails (default 0.05)",
    )
    add(
        group,
        "--db-profile",
        default=d.profile,
        metavar="{" + ",".join(PROFILES) + "}",
        help="realistic: finite pool + contention (default); ideal: the reference's model",
    )
    add(
        group,
        "--db-pool-size",
        type=int,
        default=d.pool_size,
        help=f"connections in the pool (default {d.pool_size})",
    )
    add(
        group,
        "--db-pool-timeout",
        type=seconds,
        default=str(d.pool_timeout),
        help=f"seconds to wait for a connection (default {d.pool_timeout:g})",
    )
    add(
        group,
        "--db-contention",
        type=float,
        default=d.contention,
        help=f"USL contention sigma (default {d.contention:g})",
    )
    add(
        group,
        "--db-coherency",
        type=float,
        default=d.coherency,
        help=f"USL coherency kappa (default {d.coherency:g})",
    )
    add(group, "--seed", type=int, default=None, help="seed for reproducible latency and errors")


def add_server_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("server")
    d = ServerConfig()
    add(group, "--host", default=d.host, help="interface to listen on (default 127.0.0.1)")
    add(group, "--port", type=int, default=d.port, help="port (default 8080; 0 = any free port)")
    add(
        group,
        "--request-timeout",
        type=seconds,
        default=str(d.request_timeout),
        help="deadline per request in seconds (default 5)",
    )
    add(
        group,
        "--drain-timeout",
        type=seconds,
        default=str(d.drain_timeout),
        help="how long shutdown waits for accepted requests (default 10)",
    )
    add(
        group,
        "--log-level",
        default=d.log_level,
        metavar="{" + ",".join(LOG_LEVELS) + "}",
        help="server log level (default warning)",
    )


def pattern_config(args: argparse.Namespace) -> PatternConfig:
    return PatternConfig(workers=args.workers, queue_size=args.queue_size)


def database_config(args: argparse.Namespace) -> SimulatorConfig:
    return SimulatorConfig(
        min_latency=args.min_latency,
        max_latency=args.max_latency,
        error_rate=args.error_rate,
        profile=args.db_profile,
        pool_size=args.db_pool_size,
        pool_timeout=args.db_pool_timeout,
        contention=args.db_contention,
        coherency=args.db_coherency,
        seed=args.seed,
    )


def server_config(args: argparse.Namespace) -> ServerConfig:
    return ServerConfig(
        host=args.host,
        port=args.port,
        request_timeout=args.request_timeout,
        drain_timeout=args.drain_timeout,
        log_level=args.log_level,
        quiet=getattr(args, "quiet", False),
    )
