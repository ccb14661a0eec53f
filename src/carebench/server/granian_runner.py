"""`serve --server granian`: the same app on granian (Rust HTTP, one worker process).

Measured with benchmarks/overhead.sh (wrk -t1 -c64, server on one core, medians of 3): a raw
ASGI hello-world does 1.3-1.7x uvicorn's rate on granian. For carebench's workerpool at zero
database latency the answer depends on the machine and the day: 0.87-0.9x uvicorn on an Intel
Xeon (13.3k against 15.2k req/s, 2026-11-26), 1.10x on an AMD EPYC (27.3k against 24.9k,
2026-11-28, BENCHMARKS.md), and on the same EPYC after the request-path work of issue 10 (one
write per response on uvicorn, queries in the handler's task, cheaper deadline and metrics)
1.27x in a run disturbed by other measurements (rounds 0.95-1.32x) and 1.02x in a quiet one
(38.7k against 38.0k, rounds 1.01-1.03x, 2026-11-28). On uvicorn carebench reads the
per-request `disconnected` flag to skip work for departed clients; granian exposes no such
flag, so it needs a watcher task per request. uvicorn stays the default: granian is no longer
slower, but not clearly faster either (issue 10, server performance).
"""

from __future__ import annotations

import functools
import math
import sys
import tempfile
from pathlib import Path
from typing import Any, TextIO

from carebench.server.app import CareBenchApp
from carebench.server.config import ServerConfig
from carebench.server.peers import ProcessGroup
from carebench.server.setup import ServerSetup
from carebench.server.startup import (
    StartupError,
    absorb_signals,
    banner_lines,
    build_app,
    check_start,
    final_stats,
    free_port,
    listening_line,
    stats_line,
    url_of,
)

#: What granian shows as its target (process title, logs); the app itself comes from
#: `load_worker_app`, handed to granian as its target loader.
TARGET = "carebench.server.granian_runner:load_worker_app"


def load_worker_app(pattern: str, setup: ServerSetup, group: Path | None = None) -> CareBenchApp:
    """Build the app in granian's worker; final stats print when the worker stops. With
    `--processes` above 1, `group` is the directory where the workers meet for /metrics."""
    app = build_app(pattern, setup)
    if group is None:
        app.on_shutdown = lambda: print(final_stats(app), file=sys.stdout, flush=True)
        return app
    peers = ProcessGroup(group, app)
    peers.attach()
    label = f"{pattern}, process {peers.pid}"
    app.on_shutdown = lambda: print(
        stats_line(app.metrics.snapshot(), label), file=sys.stdout, flush=True
    )
    return app


def serve_granian(pattern: str, setup: ServerSetup, out: TextIO) -> int:
    """Serve until SIGINT/SIGTERM; the worker drains and prints final stats; the exit status."""
    try:
        import granian  # noqa: F401 (whether it is installed: run_granian imports its parts)
    except ImportError:
        raise StartupError(
            "--server granian needs granian: pip install 'carebench[granian]'"
        ) from None
    # granian binds by itself, so port 0 is resolved here to a port we can print.
    server = setup.server
    check_start(setup)
    port = server.port or free_port(server.host)
    if not server.quiet:
        print("\n".join(banner_lines(pattern, setup)), file=out)
    scheme = "https" if server.tls else "http"
    print(listening_line(url_of(server.host, port, scheme), pattern), file=out, flush=True)
    absorb_signals()
    with tempfile.TemporaryDirectory(prefix="carebench-processes-") as directory:
        group = Path(directory) if server.processes > 1 else None
        run_granian(pattern, setup, port, group)
    return 0


def run_granian(pattern: str, setup: ServerSetup, port: int, group: Path | None) -> None:
    """granian's server with `--processes` workers, each building its own app."""
    from granian.constants import HTTPModes, Interfaces, Loops
    from granian.http import HTTP1Settings
    from granian.log import LogLevels

    server = setup.server
    granian = draining_granian()(
        TARGET,
        address=server.host,
        port=port,
        interface=Interfaces.ASGI,
        workers=server.processes,
        loop=Loops.uvloop,
        http=HTTPModes.http1,
        # The connection limits uvicorn gets from carebench's protocol, in hyper's terms: a
        # head not read within --read-timeout closes the connection, one larger than
        # --max-header-size (hyper's read buffer, at least 8 KiB) is a 431; hyper allows
        # 100 headers.
        http1_settings=HTTP1Settings(
            header_read_timeout=math.ceil(server.read_timeout * 1000),
            max_buffer_size=server.max_header_size,
        ),
        websockets=False,
        backlog=4096,
        log_level=LogLevels(server.log_level),
        # The worker is killed if it has not drained by then. granian types this as whole
        # seconds but only joins and subtracts with it, so --drain-timeout is kept exact.
        workers_kill_timeout=server.drain_timeout,
        **tls_options(server),
    )
    # granian calls the loader in its worker process: the settings travel as its arguments
    # (inherited on fork, pickled on spawn) instead of through the environment.
    loader = functools.partial(load_worker_app, pattern, setup, group)
    granian.serve(target_loader=loader, wrap_loader=False)


def tls_options(server: ServerConfig) -> dict[str, Any]:
    """granian's TLS arguments: TLS 1.2+ (its default minimum is 1.3) and, with
    --tls-client-ca, client certificates required and verified against that CA."""
    if not server.tls:
        return {}
    try:
        from granian.constants import SSLProtocols
    except ImportError:
        raise StartupError(
            "--tls-cert on granian needs a granian with TLS protocol settings: "
            "pip install --upgrade granian"
        ) from None
    assert server.tls_cert is not None and server.tls_key is not None
    options: dict[str, Any] = {
        "ssl_cert": Path(server.tls_cert),
        "ssl_key": Path(server.tls_key),
        "ssl_protocol_min": SSLProtocols.tls12,
    }
    if server.tls_client_ca is not None:
        options |= {"ssl_ca": Path(server.tls_client_ca), "ssl_client_verify": True}
    return options


def draining_granian() -> type[Any]:
    """granian's server class, with a second SIGINT or SIGTERM killing the worker at once.

    granian's main process answers the first signal by stopping its worker (which finishes
    the requests it is running) and ignores any further one, so a second signal could not
    cut a drain short. Requests still running when the worker is killed (at the second
    signal, or at --drain-timeout) get no answer: granian gives the app no way to answer them
    first, unlike `serve --server uvicorn`, which answers them 503.
    """
    from granian.server import MPServer

    class DrainingGranian(MPServer):
        def signal_handler_interrupt(self, *args: Any, **kwargs: Any) -> None:
            if self.interrupt_signal:
                for worker in self.wrks:
                    worker.kill()  # type: ignore[no-untyped-call]
            super().signal_handler_interrupt(*args, **kwargs)  # type: ignore[no-untyped-call]

    return DrainingGranian
