"""`serve --server uvicorn` (the default): the app on uvicorn with uvloop and httptools."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from pathlib import Path
from types import FrameType
from typing import TextIO

import uvicorn
import uvloop

from carebench.errors import ConfigError
from carebench.server.app import CareBenchApp
from carebench.server.config import ServerConfig
from carebench.server.peers import ProcessGroup
from carebench.server.setup import ServerSetup
from carebench.server.startup import (
    StartupError,
    absorb_signals,
    banner_lines,
    bind_socket,
    build_app,
    check_start,
    final_stats,
    listening_line,
    url_of,
)
from carebench.server.supervisor import (
    STARTUP_FAILED,
    child_socket,
    exit_with_parent,
    report_final,
    serve_processes,
)
from carebench.server.tls import server_context
from carebench.server.uvicorn_drain import DrainingServer
from carebench.server.uvicorn_protocol import ConnectionLimits, OneWriteHttpToolsProtocol


def serve_uvicorn(pattern: str, setup: ServerSetup, out: TextIO) -> int:
    """Serve until SIGINT/SIGTERM, drain, print final stats; the exit status. With
    `--processes` above 1, a parent runs that many servers on the port (server/supervisor.py)."""
    server = setup.server
    if server.processes > 1:
        return serve_processes(pattern, setup, out, run_child)
    check_start(setup)
    app = build_app(pattern, setup)
    sock = bind_socket(server.host, server.port)
    if not server.quiet:
        print("\n".join(banner_lines(pattern, setup)), file=out)
    host, port = sock.getsockname()[:2]
    scheme = "https" if server.tls else "http"
    print(listening_line(url_of(host, port, scheme), pattern), file=out, flush=True)
    uv_server = DrainingServer(uvicorn_config(app, server), app)
    absorb_signals()
    try:
        uvloop.run(uv_server.serve(sockets=[sock]))
    finally:
        sock.close()
    if not uv_server.started:
        raise StartupError("the server did not start (see the log above)")
    print(final_stats(app), file=out, flush=True)
    return 0


def run_child(pattern: str, setup: ServerSetup, port: int, directory: Path) -> None:
    """One uvicorn server of `serve --processes` (the target the supervisor spawns)."""
    try:
        sock = child_socket(setup, port)
        app = build_app(pattern, setup)
    except (ConfigError, StartupError) as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        sys.exit(STARTUP_FAILED)
    group = ProcessGroup(directory, app)
    group.attach()
    uv_server = DrainingServer(uvicorn_config(app, setup.server), app)
    stop_on_early_signals(uv_server)
    try:
        uvloop.run(_serve_in_group(uv_server, group, sock))
    finally:
        sock.close()
    if not uv_server.started:
        sys.exit(STARTUP_FAILED)
    report_final(directory, app)


def stop_on_early_signals(uv_server: DrainingServer) -> None:
    """In a child: SIGINT or SIGTERM before uvicorn sets its own handlers stops the server as
    soon as it has started, instead of being absorbed.

    The parent passes its signal on to a child that may still be starting (a replacement
    for a dead one); absorbed, it would leave that child serving and the parent waiting.
    uvicorn restores this handler when it has drained and re-raises the signal that stopped
    it: the server is stopping by then, so the handler does nothing (as `absorb_signals`).
    """

    def stop(signum: int, frame: FrameType | None) -> None:
        if not uv_server.should_exit:
            uv_server.handle_exit(signum, frame)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)


async def _serve_in_group(
    uv_server: DrainingServer, group: ProcessGroup, sock: socket.socket
) -> None:
    watcher = asyncio.create_task(
        exit_with_parent(lambda: uv_server.handle_exit(signal.SIGTERM, None))
    )
    try:
        await uv_server.serve(sockets=[sock])
    finally:
        watcher.cancel()
        await group.close()


def uvicorn_config(app: CareBenchApp, server: ServerConfig) -> uvicorn.Config:
    """uvicorn's settings for the benchmark: uvloop, httptools (one write per response, the
    connection limits), no WebSocket, no access log."""
    limits = ConnectionLimits(
        read_timeout=server.read_timeout, max_header_size=server.max_header_size
    )
    config = uvicorn.Config(
        app,
        loop="uvloop",
        http=OneWriteHttpToolsProtocol.with_limits(limits),
        ws="none",
        lifespan="on",
        log_level=server.log_level,
        access_log=False,
        # Loopback by default and no proxy in front: skip the X-Forwarded-* middleware layer.
        proxy_headers=False,
        # DrainingServer bounds the drain by --drain-timeout itself (uvicorn's is whole seconds).
        timeout_graceful_shutdown=None,
        backlog=4096,
        # HTTPS: uvicorn's own context sets no minimum version, so carebench's (TLS 1.2+,
        # AEAD suites, client certificates with --tls-client-ca) replaces it once loaded.
        ssl_certfile=server.tls_cert,
        ssl_keyfile=server.tls_key,
    )
    if server.tls:
        config.load()
        config.ssl = server_context(server.tls_cert, server.tls_key, server.tls_client_ca)
    return config
