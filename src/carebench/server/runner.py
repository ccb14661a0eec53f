"""Run the app on uvicorn (uvloop + httptools): bind, banner, serve, drain, final stats."""

from __future__ import annotations

import asyncio
import math
import signal
import socket
import sys
from types import FrameType
from typing import Any, TextIO

import uvicorn

from carebench import __version__
from carebench.backends.simulator import SimulatedBackend, SimulatorConfig
from carebench.patterns.base import PatternConfig, create_pattern
from carebench.resilience.config import ResilienceConfig, wrap_backend
from carebench.server.app import CareBenchApp
from carebench.server.config import ServerConfig


class StartupError(RuntimeError):
    """The server could not start (e.g. the port is taken); the message says why."""


def build_app(
    pattern: str,
    server: ServerConfig,
    patterns: PatternConfig,
    database: SimulatorConfig,
    resilience: ResilienceConfig | None = None,
) -> CareBenchApp:
    backend = wrap_backend(SimulatedBackend(database), resilience or ResilienceConfig())
    return CareBenchApp(
        create_pattern(pattern, backend, patterns),
        backend,
        request_timeout=server.request_timeout,
        drain_timeout=server.drain_timeout,
        class_timeouts=server.class_timeouts,
        enable_profiling=server.enable_profiling,
    )


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind before starting uvicorn so port 0 resolves to a real port we can print."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise StartupError(f"cannot resolve --host {host!r}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def banner_lines(
    pattern: str, server: ServerConfig, patterns: PatternConfig, database: SimulatorConfig
) -> list[str]:
    """The effective configuration, as the reference prints it at start-up."""
    ms = 1000.0
    lines = [
        f"carebench {__version__} - healthcare API concurrency benchmark",
        f"  pattern          {pattern}",
        f"  workers          {patterns.workers}",
        f"  queue size       {patterns.queue_size}",
        f"  db latency       {database.min_latency * ms:g}-{database.max_latency * ms:g} ms",
        f"  db error rate    {database.error_rate:g}",
        f"  db profile       {database.profile}",
    ]
    if database.limited:
        lines += [
            f"  db pool          {database.pool_size} connections, "
            f"acquire timeout {database.pool_timeout:g}s",
            f"  db contention    sigma={database.contention:g} kappa={database.coherency:g} "
            f"(throughput peaks near {database.peak_concurrency():.0f} concurrent queries)",
        ]
    lines += [
        f"  deadlines        critical {server.critical_timeout:g}s, standard "
        f"{server.request_timeout:g}s, batch {server.batch_timeout:g}s",
        f"  seed             {database.seed if database.seed is not None else 'random'}",
    ]
    return lines


def serve(
    pattern: str,
    server: ServerConfig,
    patterns: PatternConfig,
    database: SimulatorConfig,
    resilience: ResilienceConfig | None = None,
    out: TextIO = sys.stdout,
) -> int:
    """Serve until SIGINT/SIGTERM, drain, print final stats; the exit status."""
    if server.server == "granian":
        from carebench.server.granian_runner import serve_granian

        return serve_granian(pattern, server, patterns, database, resilience, out)
    app = build_app(pattern, server, patterns, database, resilience)
    sock = bind_socket(server.host, server.port)
    if not server.quiet:
        print("\n".join(banner_lines(pattern, server, patterns, database)), file=out)
    print(f"carebench listening on {url_of(sock)} (pattern {pattern})", file=out, flush=True)
    uv_server = uvicorn.Server(_uvicorn_config(app, server))
    absorb_signals()
    try:
        _run(uv_server.serve(sockets=[sock]))
    finally:
        sock.close()
    if not uv_server.started:
        raise StartupError("the server did not start (see the log above)")
    print(final_stats(app), file=out, flush=True)
    return 0


def _uvicorn_config(app: CareBenchApp, server: ServerConfig) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        log_level=server.log_level,
        access_log=False,
        # Loopback by default and no proxy in front: skip the X-Forwarded-* middleware layer.
        proxy_headers=False,
        timeout_graceful_shutdown=math.ceil(server.drain_timeout),
        backlog=4096,
    )


def absorb_signals() -> None:
    # uvicorn re-raises the signal that stopped it once it has drained; a no-op handler
    # keeps the graceful exit at status 0 instead of dying by that signal.
    def ignore(signum: int, frame: FrameType | None) -> None:
        return None

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, ignore)


def _run(coroutine: Any) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on every POSIX system
        asyncio.run(coroutine)
        return
    uvloop.run(coroutine)


def final_stats(app: CareBenchApp) -> str:
    s = app.metrics_snapshot()
    lat = s["latency_ms"]
    return (
        f"final stats ({s['pattern']}): {s['total_requests']} requests, "
        f"{s['success_requests']} ok, {s['error_requests']} errors, "
        f"{s['rejected_requests']} rejected, {s['timeout_requests']} timeouts, "
        f"{s['cancelled_requests']} cancelled, {s['invalid_requests']} invalid; "
        f"latency p50 {lat['median']:.1f} ms, p99 {lat['p99']:.1f} ms, max {lat['max']:.1f} ms; "
        f"{s['requests_per_second']:.1f} req/s over {s['duration_seconds']:.1f}s"
    )
