"""Start-up steps every HTTP server shares: build the app, bind, banner, signals, final stats.

Below the server runners (uvicorn_runner, granian_runner) and above the app: the runners
import this module, never each other, and nothing here imports a runner.
"""

from __future__ import annotations

import asyncio
import signal
import socket
from types import FrameType

from carebench import __version__
from carebench.backends.config import create_backend
from carebench.backends.dsn import redact_dsn
from carebench.errors import BackendUnavailable
from carebench.metrics.document import RequestSnapshot
from carebench.patterns.base import create_pattern
from carebench.server.app import CareBenchApp
from carebench.server.setup import ServerSetup


class StartupError(RuntimeError):
    """The server could not start (e.g. the port is taken); the message says why."""


def build_app(pattern: str, setup: ServerSetup) -> CareBenchApp:
    """The ASGI app: the backend (faults injected, wrapped by resilience) behind `pattern`."""
    server = setup.server
    backend = setup.build_backend()
    return CareBenchApp(
        create_pattern(pattern, backend, setup.patterns),
        backend,
        request_timeout=server.request_timeout,
        drain_timeout=server.drain_timeout,
        class_timeouts=server.class_timeouts,
        enable_profiling=server.enable_profiling,
        gate=setup.auth.build_gate(),
        audit=setup.audit.build_trail(),
    )


def check_start(setup: ServerSetup) -> None:
    """Check what a server process would find wrong as it builds its app, before any starts.

    Every runner calls it first, so one bad setting ends `serve` the same way with one process
    or several: `serve --processes N` and granian build their apps in child processes, where
    a ConfigError (exit 2 in the foreground) became a child that could not start (exit 1) or
    a traceback. StartupError for a database that cannot be used, ConfigError for the rest."""
    check_backend(setup)
    setup.audit.check_log()


def check_backend(setup: ServerSetup) -> None:
    """Open and close a real database once before serving, so an unreachable, refused or
    unseeded one is one clear error at start-up instead of a 500 per request."""
    if not setup.backend.real:
        return

    async def probe() -> None:
        backend = create_backend(setup.backend, setup.effective_database())
        try:
            await backend.start()
        finally:
            await backend.close()

    try:
        asyncio.run(probe())
    except BackendUnavailable as unavailable:
        raise StartupError(str(unavailable)) from None


def bind_socket(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    """Bind before starting the server so port 0 resolves to a real port we can print.

    With `reuse_port`, other sockets may bind the same port with it (`serve --processes`:
    the kernel spreads connections over the processes listening)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise StartupError(f"cannot resolve --host {host!r}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


def free_port(host: str) -> int:
    """A port that was free a moment ago, for servers that bind by themselves."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def url_of(host: str, port: int, scheme: str = "http") -> str:
    """The base URL a client uses (IPv6 hosts in brackets)."""
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def banner_lines(pattern: str, setup: ServerSetup) -> list[str]:
    """The effective configuration, as the reference prints it at start-up."""
    server, patterns, database = setup.server, setup.patterns, setup.effective_database()
    low, high = database.latency_range
    lines = [
        f"carebench {__version__} - healthcare API concurrency benchmark",
        f"  pattern          {pattern}",
        f"  server           {server.server}",
        f"  workers          {patterns.workers}",
        f"  queue size       {patterns.queue_size}",
        f"  backend          {_backend_line(setup)}",
        f"  db latency       {low * 1000:g}-{high * 1000:g} ms"
        + (" injected per query" if setup.backend.real else ""),
        f"  db error rate    {database.error_rate or 0:g}"
        + (" injected" if setup.backend.real else ""),
    ]
    if setup.backend.real:
        lines.append(
            f"  db pool          {database.pool_size} connections, "
            f"acquire timeout {database.pool_timeout:g}s"
        )
    elif database.limited:
        lines += [
            f"  db pool          {database.pool_size} connections, "
            f"acquire timeout {database.pool_timeout:g}s",
            f"  db contention    sigma={database.contention:g} kappa={database.coherency:g} "
            f"(throughput peaks near {database.peak_concurrency():.0f} concurrent queries)",
        ]
    if server.tls:
        client = (
            f", client certificates from {server.tls_client_ca}" if server.tls_client_ca else ""
        )
        lines.append(f"  tls              TLS 1.2+ with {server.tls_cert}{client}")
    if setup.faults.faults:
        lines.append(f"  faults           {setup.faults.faults} (timed from now)")
    if server.processes > 1:
        lines.append(
            f"  processes        {server.processes} sharing the port; workers, queue size and "
            f"limits are per process: total capacity is {server.processes} x each"
        )
    lines += [
        f"  deadlines        critical {server.critical_timeout:g}s, standard "
        f"{server.request_timeout:g}s, batch {server.batch_timeout:g}s",
        f"  seed             {database.seed if database.seed is not None else 'random'}",
        f"  access control   {_auth_line(setup)}",
    ]
    if setup.audit.audit_log is not None:
        lines.append(f"  audit log        {setup.audit.audit_log} ({setup.audit.audit_format})")
    return lines


def _auth_line(setup: ServerSetup) -> str:
    auth = setup.auth
    if auth.auth == "jwt":
        return f"jwt ({auth.jwt_key}, iss {auth.jwt_issuer}, aud {auth.jwt_audience})"
    if auth.auth == "apikey":
        return f"API keys from {auth.api_keys}"
    return "none" + (" (--insecure)" if auth.insecure else "")


def _backend_line(setup: ServerSetup) -> str:
    backend = setup.backend
    if backend.backend == "postgres":
        return f"postgres at {redact_dsn(backend.dsn or '')}"
    if backend.backend == "sqlite":
        return f"sqlite file {backend.db_path or '(default)'}"
    return f"simulator ({setup.database.profile} profile)"


def listening_line(url: str, pattern: str) -> str:
    """The line ServerProcess (and people) wait for before sending traffic."""
    return f"carebench listening on {url} (pattern {pattern})"


def absorb_signals() -> None:
    """Leave no-op SIGINT/SIGTERM handlers for the server to restore after its shutdown.

    uvicorn re-raises the signal that stopped it once it has drained, and granian restores
    the handlers it found; without these the graceful exit would die by that signal instead
    of returning status 0.
    """

    def ignore(signum: int, frame: FrameType | None) -> None:
        return None

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, ignore)


def final_stats(app: CareBenchApp) -> str:
    """One line of totals and latency, printed when the server has drained."""
    return stats_line(app.metrics.snapshot(), app.pattern.name)


def stats_line(s: RequestSnapshot, label: str) -> str:
    """`final stats (label): ...`: a snapshot's totals and latency on one line."""
    lat = s["latency_ms"]
    return (
        f"final stats ({label}): {s['total_requests']} requests, "
        f"{s['success_requests']} ok, {s['error_requests']} errors, "
        f"{s['rejected_requests']} rejected, {s['timeout_requests']} timeouts, "
        f"{s['cancelled_requests']} cancelled, {s['invalid_requests']} invalid; "
        f"latency p50 {lat['median']:.1f} ms, p99 {lat['p99']:.1f} ms, max {lat['max']:.1f} ms; "
        f"{s['requests_per_second']:.1f} req/s over {s['duration_seconds']:.1f}s"
    )
