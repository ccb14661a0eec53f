"""`carebench serve`: run the app on the HTTP server chosen by `--server`."""

from __future__ import annotations

import sys
from typing import Protocol, TextIO

from carebench.backends.simulator import SimulatorConfig
from carebench.patterns.base import PatternConfig
from carebench.resilience.config import ResilienceConfig
from carebench.server.config import ServerConfig
from carebench.server.servers import SERVERS


class ServeFunction(Protocol):
    """What every registered server provides: serve until stopped, return the exit status."""

    def __call__(
        self,
        pattern: str,
        server: ServerConfig,
        patterns: PatternConfig,
        database: SimulatorConfig,
        resilience: ResilienceConfig | None,
        out: TextIO,
    ) -> int: ...


def serve(
    pattern: str,
    server: ServerConfig,
    patterns: PatternConfig,
    database: SimulatorConfig,
    resilience: ResilienceConfig | None = None,
    out: TextIO = sys.stdout,
) -> int:
    """Serve until SIGINT/SIGTERM, drain, print final stats; the exit status.

    Raises `carebench.server.startup.StartupError` when the server cannot start.
    """
    serve_with: ServeFunction = SERVERS.load(server.server)
    return serve_with(pattern, server, patterns, database, resilience, out)
