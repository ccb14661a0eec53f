"""`carebench serve`: run the app on the HTTP server chosen by `--server`."""

from __future__ import annotations

import sys
from typing import Protocol, TextIO

from carebench.server.servers import SERVERS
from carebench.server.setup import ServerSetup


class ServeFunction(Protocol):
    """What every registered server provides: serve until stopped, return the exit status."""

    def __call__(self, pattern: str, setup: ServerSetup, out: TextIO) -> int: ...


def serve(pattern: str, setup: ServerSetup, out: TextIO = sys.stdout) -> int:
    """Serve until SIGINT/SIGTERM, drain, print final stats; the exit status.

    Raises `carebench.server.startup.StartupError` when the server cannot start.
    """
    serve_with: ServeFunction = SERVERS.load(setup.server.server)
    return serve_with(pattern, setup, out)
