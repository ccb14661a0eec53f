"""The parent of `serve --processes`: children started, signals passed on, exits and totals."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import msgspec
import pytest

from carebench.metrics.requests import RequestMetrics
from carebench.server import supervisor
from carebench.server.config import ServerConfig
from carebench.server.setup import ServerSetup
from carebench.server.startup import StartupError
from carebench.server.supervisor import FINAL_SUFFIX, Supervisor, serve_processes

SETUP = ServerSetup(server=ServerConfig(port=0, processes=2, quiet=True))
READY = ".ready"


def leave_counts(directory: Path, requests: int) -> None:
    metrics = RequestMetrics("workerpool")
    for _ in range(requests):
        metrics.record("success", 0.002, 200)
    final = directory / f"{os.getpid()}{FINAL_SUFFIX}"
    final.write_bytes(msgspec.json.encode(metrics.counts()))


def serves_and_exits(pattern: str, setup: ServerSetup, port: int, directory: Path) -> None:
    """A child that served 3 requests and exits cleanly on its own."""
    leave_counts(directory, 3)


def crashes(pattern: str, setup: ServerSetup, port: int, directory: Path) -> None:
    """A child that dies at once."""
    sys.exit(3)


def serves_until_sigterm(pattern: str, setup: ServerSetup, port: int, directory: Path) -> None:
    """A child that says it is up, waits for SIGTERM, then leaves 2 requests' counts."""
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stopped.set())
    (directory / f"{os.getpid()}{READY}").touch()
    assert stopped.wait(30)
    leave_counts(directory, 2)


def run_group(
    tmp_path: Path, target: supervisor.ChildTarget, setup: ServerSetup = SETUP
) -> tuple[int, str]:
    out = io.StringIO()
    status = Supervisor("workerpool", setup, 0, tmp_path, out).run(target)
    return status, out.getvalue()


def test_a_child_that_exits_unasked_fails_the_group_but_counts(tmp_path: Path) -> None:
    """Its final counts still reach the totals line; the exit was unexpected, so status 1.

    One child: with two, the first one's exit sends the other SIGTERM, which may land before
    that child has left its counts (as it would for a real server still starting)."""
    one = ServerSetup(server=ServerConfig(port=0, processes=1, quiet=True))
    status, out = run_group(tmp_path, serves_and_exits, one)
    assert "final stats (workerpool, 1 processes): 3 requests, 3 ok" in out
    assert status == 1


def test_a_crashing_child_fails_the_group(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A child that dies unasked is named on stderr and the parent's status is 1."""
    status, out = run_group(tmp_path, crashes)
    assert status == 1
    errors = capsys.readouterr().err
    assert "exited unexpectedly (status 3); stopping the others" in errors
    assert out == ""  # no counts were left: no totals line


def test_sigterm_is_passed_to_every_child(tmp_path: Path) -> None:
    """SIGTERM to the parent reaches both children; both drain, the parent exits 0."""

    def terminate_when_up() -> None:
        deadline = time.monotonic() + 30
        while len(list(tmp_path.glob(f"*{READY}"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)  # polling for the children's readiness files
        os.kill(os.getpid(), signal.SIGTERM)

    sender = threading.Thread(target=terminate_when_up)
    sender.start()
    status, out = run_group(tmp_path, serves_until_sigterm)
    sender.join()
    assert status == 0
    assert "final stats (workerpool, 2 processes): 4 requests, 4 ok" in out
    assert signal.getsignal(signal.SIGTERM) is not None  # the previous handler is back


def test_serve_processes_prints_the_banner_and_url(tmp_path: Path) -> None:
    """The parent binds port 0, prints the group's banner and the URL children serve on."""
    out = io.StringIO()
    setup = ServerSetup(server=ServerConfig(port=0, processes=2))
    status = serve_processes("workerpool", setup, out, crashes)
    text = out.getvalue()
    assert "processes        2 sharing the port" in text and "total capacity is 2 x each" in text
    assert "carebench listening on http://127.0.0.1:" in text
    assert status == 1


async def test_a_child_stops_when_its_parent_goes(monkeypatch: pytest.MonkeyPatch) -> None:
    """exit_with_parent calls stop once the parent pid changes (the parent was killed)."""
    parents = iter([100, 100, 1])
    monkeypatch.setattr(os, "getppid", lambda: next(parents))
    monkeypatch.setattr(supervisor, "PARENT_CHECK_INTERVAL", 0.0)
    stopped: list[bool] = []
    await asyncio.wait_for(supervisor.exit_with_parent(lambda: stopped.append(True)), 5)
    assert stopped == [True]


def test_a_port_another_group_listens_on_is_refused() -> None:
    """A second group on a port the first one serves fails to start instead of sharing it."""
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        setup = ServerSetup(server=ServerConfig(port=port, processes=2, quiet=True))
        with pytest.raises(StartupError, match=f"cannot listen on 127.0.0.1:{port}"):
            serve_processes("workerpool", setup, io.StringIO(), crashes)
