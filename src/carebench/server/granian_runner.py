"""`serve --server granian`: the same app on granian (Rust HTTP, one worker process).

Measured on this machine (benchmarks/overhead.sh, wrk -t1 -c64, server on one core): a raw
ASGI hello-world does 1.3-1.7x uvicorn's rate on granian, but carebench's workerpool at zero
database latency does 0.87-0.9x (13.3k against 15.2k req/s, medians of 3, BENCHMARKS.md).
On uvicorn carebench reads the per-request `disconnected` flag to skip work for departed
clients; granian exposes no such flag, so a watcher task per request eats what its faster
HTTP layer saves. uvicorn therefore stays the default.
"""

from __future__ import annotations

import os
import socket
from typing import TextIO

from carebench.backends.simulator import SimulatorConfig
from carebench.patterns.base import PatternConfig
from carebench.resilience.config import ResilienceConfig
from carebench.server.config import ServerConfig
from carebench.server.granian_app import CONFIG_VARIABLE, encode_configs
from carebench.server.runner import StartupError, absorb_signals, banner_lines

TARGET = "carebench.server.granian_app:create_app"


def free_port(host: str) -> int:
    """A port that was free a moment ago (granian binds by itself, so port 0 is resolved here)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def serve_granian(
    pattern: str,
    server: ServerConfig,
    patterns: PatternConfig,
    database: SimulatorConfig,
    resilience: ResilienceConfig | None,
    out: TextIO,
) -> int:
    try:
        from granian import Granian
        from granian.constants import HTTPModes, Interfaces, Loops
        from granian.log import LogLevels
    except ImportError:
        raise StartupError(
            "--server granian needs granian: pip install 'carebench[granian]'"
        ) from None
    port = server.port or free_port(server.host)
    os.environ[CONFIG_VARIABLE] = encode_configs(
        pattern, server, patterns, database, resilience or ResilienceConfig()
    )
    if not server.quiet:
        print("\n".join(banner_lines(pattern, server, patterns, database)), file=out)
        print("  server           granian", file=out)
    print(
        f"carebench listening on http://{server.host}:{port} (pattern {pattern})",
        file=out,
        flush=True,
    )
    # A second SIGTERM during granian's own shutdown must not kill the process with that
    # signal: granian restores the handlers it found, so leave it no-op ones.
    absorb_signals()
    Granian(
        TARGET,
        address=server.host,
        port=port,
        interface=Interfaces.ASGI,
        workers=1,
        loop=Loops.uvloop,
        http=HTTPModes.http1,
        websockets=False,
        backlog=4096,
        log_level=LogLevels(server.log_level),
        factory=True,
    ).serve()
    return 0
