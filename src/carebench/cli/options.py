"""Command-line options shared by the commands, with CAREBENCH_* environment defaults."""

from __future__ import annotations

import argparse
import os
import re
from typing import Any

from carebench.backends.simulator import PROFILES, SimulatorConfig
from carebench.patterns.base import LIMIT_ALGORITHM_NAMES, PatternConfig
from carebench.resilience.config import ResilienceConfig
from carebench.server.config import LOG_LEVELS, SERVERS, ServerConfig

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
    d = PatternConfig()
    add(group, "--workers", type=int, default=d.workers, help="worker tasks (default 20)")
    add(
        group,
        "--queue-size",
        type=int,
        default=d.queue_size,
        help="bounded queue capacity (default 100)",
    )
    add(
        group,
        "--limit",
        type=int,
        default=d.limit,
        help="semaphore: requests in flight at most (default 20)",
    )
    add(
        group,
        "--max-wait",
        type=seconds,
        default=str(d.max_wait),
        help="semaphore: seconds to wait for a permit before rejecting (default 0)",
    )
    add(
        group,
        "--rate-limit",
        type=float,
        default=d.rate_limit,
        help="ratelimit: requests per second admitted (default 100)",
    )
    add(group, "--burst", type=int, default=d.burst, help="ratelimit: bucket size (default 20)")
    add(
        group,
        "--limit-algorithm",
        default=d.limit_algorithm,
        metavar="{" + ",".join(LIMIT_ALGORITHM_NAMES) + "}",
        help="adaptive: how the limit is learned (default gradient2)",
    )


def add_resilience_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("resilience (combines with any pattern)")
    d = ResilienceConfig()
    add(
        group,
        "--retries",
        type=int,
        default=d.retries,
        help="retry transient database errors up to N times (default 0)",
    )
    group.add_argument(
        "--circuit-breaker",
        action="store_true",
        default=os.environ.get(ENV_PREFIX + "CIRCUIT_BREAKER", "") not in ("", "0"),
        help="fail fast while the database keeps failing [env CAREBENCH_CIRCUIT_BREAKER]",
    )
    add(
        group,
        "--breaker-threshold",
        type=int,
        default=d.breaker_threshold,
        help="consecutive failures that open the circuit (default 5)",
    )
    add(
        group,
        "--breaker-reset",
        type=seconds,
        default=str(d.breaker_reset),
        help="seconds the circuit stays open before a probe (default 5)",
    )


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
        "--critical-timeout",
        type=seconds,
        default=str(d.critical_timeout),
        help="deadline of X-Request-Priority: critical requests (default 2)",
    )
    add(
        group,
        "--batch-timeout",
        type=seconds,
        default=str(d.batch_timeout),
        help="deadline of X-Request-Priority: batch requests (default 30)",
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
    add_server_choice(group)


def add_server_choice(group: Any) -> None:
    add(
        group,
        "--server",
        default="uvicorn",
        metavar="{" + ",".join(SERVERS) + "}",
        help="HTTP server: uvicorn (default) or granian (needs the granian extra)",
    )


def pattern_config(args: argparse.Namespace) -> PatternConfig:
    return PatternConfig(
        workers=args.workers,
        queue_size=args.queue_size,
        limit=args.limit,
        max_wait=args.max_wait,
        rate_limit=args.rate_limit,
        burst=args.burst,
        limit_algorithm=args.limit_algorithm,
    )


def resilience_config(args: argparse.Namespace) -> ResilienceConfig:
    return ResilienceConfig(
        retries=args.retries,
        circuit_breaker=args.circuit_breaker,
        breaker_threshold=args.breaker_threshold,
        breaker_reset=args.breaker_reset,
    )


def add_client_options(group: Any) -> None:
    """How each simulated client behaves: shared by `loadtest` and `sweep`."""
    group.add_argument("--timeout", type=seconds, default=5.0, help="client-side timeout (5 s)")
    group.add_argument(
        "--ids",
        default="fixed:P12345",
        help="patient ids: fixed:ID, uniform:N or zipf:N[:S] (default fixed:P12345)",
    )
    group.add_argument(
        "--priorities",
        help="send X-Request-Priority drawn from weights, e.g. critical:10,standard:70,batch:20",
    )
    group.add_argument(
        "--honor-retry-after",
        action="store_true",
        help="closed loop: a refused client waits Retry-After before its next request "
        "(default: re-send at once, as the reference's load test does)",
    )


def add_forwarded_server_options(parser: argparse.ArgumentParser) -> None:
    """The `serve` flags a load test or sweep accepts and passes to each server it starts."""
    group = parser.add_argument_group("servers started by the load test")
    add_server_choice(group)
    d = ServerConfig()
    for flag, default, what in (
        ("--request-timeout", d.request_timeout, "standard"),
        ("--critical-timeout", d.critical_timeout, "critical"),
        ("--batch-timeout", d.batch_timeout, "batch"),
    ):
        group.add_argument(
            flag,
            type=seconds,
            default=default,
            help=f"server-side deadline of {what} requests (default {default:g})",
        )
    add_pattern_options(parser)
    add_resilience_options(parser)
    add_database_options(parser)


#: Flags a load test passes on to each server it starts: (flag, argparse dest, unit suffix).
FORWARDED_FLAGS = (
    ("--workers", "workers", ""),
    ("--queue-size", "queue_size", ""),
    ("--limit", "limit", ""),
    ("--max-wait", "max_wait", "s"),
    ("--rate-limit", "rate_limit", ""),
    ("--burst", "burst", ""),
    ("--limit-algorithm", "limit_algorithm", ""),
    ("--min-latency", "min_latency", "s"),
    ("--max-latency", "max_latency", "s"),
    ("--error-rate", "error_rate", ""),
    ("--db-profile", "db_profile", ""),
    ("--db-pool-size", "db_pool_size", ""),
    ("--db-pool-timeout", "db_pool_timeout", "s"),
    ("--db-contention", "db_contention", ""),
    ("--db-coherency", "db_coherency", ""),
    ("--request-timeout", "request_timeout", "s"),
    ("--critical-timeout", "critical_timeout", "s"),
    ("--batch-timeout", "batch_timeout", "s"),
    ("--retries", "retries", ""),
    ("--breaker-threshold", "breaker_threshold", ""),
    ("--breaker-reset", "breaker_reset", "s"),
    ("--server", "server", ""),
    ("--seed", "seed", ""),
)


def forwarded_server_flags(args: argparse.Namespace) -> list[str]:
    """The server flags of a load test or sweep, as arguments for `carebench serve`."""
    flags: list[str] = []
    for flag, dest, unit in FORWARDED_FLAGS:
        value = getattr(args, dest, None)
        if value is not None:
            flags += [flag, f"{value}{unit}"]
    if getattr(args, "circuit_breaker", False):
        flags.append("--circuit-breaker")
    return flags


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
        critical_timeout=args.critical_timeout,
        batch_timeout=args.batch_timeout,
        drain_timeout=args.drain_timeout,
        log_level=args.log_level,
        quiet=getattr(args, "quiet", False),
        enable_profiling=getattr(args, "enable_profiling", False),
        server=getattr(args, "server", "uvicorn"),
    )
