"""The HTTP servers are chosen by name, loaded lazily, and the start-up code has no cycle."""

from __future__ import annotations

import subprocess
import sys
from typing import TextIO

import pytest

from carebench.errors import ConfigError
from carebench.patterns.base import PatternConfig
from carebench.server import runner
from carebench.server.config import ServerConfig
from carebench.server.servers import SERVERS
from carebench.server.setup import ServerSetup


@pytest.mark.parametrize("name", SERVERS.names())
def test_every_registered_server_loads_a_serve_function(name: str) -> None:
    """Each name resolves to a callable whose module is the runner named after the server."""
    if name == "granian":
        pytest.importorskip("granian")
    serve_function = SERVERS.load(name)
    assert callable(serve_function)
    assert serve_function.__module__ == f"carebench.server.{name}_runner"


def test_an_unknown_server_names_the_closest() -> None:
    """A misspelt --server is a ConfigError with a did-you-mean, raised by ServerConfig."""
    with pytest.raises(ConfigError, match=r"--server: unknown server 'uvicon' \(did you mean"):
        ServerConfig(server="uvicon")


def test_serve_dispatches_to_the_chosen_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """runner.serve hands every argument to the function registered under --server."""
    calls: list[tuple[object, ...]] = []

    def fake_serve(*args: object) -> int:
        calls.append(args)
        return 7

    monkeypatch.setattr(SERVERS, "load", lambda name: fake_serve if name == "granian" else None)
    setup = ServerSetup(ServerConfig(server="granian"), PatternConfig(workers=3))
    out: TextIO = sys.stderr
    assert runner.serve("naive", setup, out) == 7
    assert calls == [("naive", setup, out)]


def test_checking_a_server_name_imports_no_server() -> None:
    """Validating --server (ServerConfig) imports neither uvicorn nor granian nor a runner."""
    code = (
        "import sys\n"
        "from carebench.server.config import ServerConfig\n"
        "ServerConfig(server='granian')\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] in ('uvicorn', 'granian')\n"
        "          or m.endswith('_runner') or m == 'carebench.server.startup']\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
