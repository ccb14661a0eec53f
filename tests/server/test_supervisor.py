"""The parent of `serve --processes`: children started and replaced, signals passed on, exits
and totals."""

from __future__ import annotations

import asyncio
import io
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

from carebench.metrics.requests import RequestMetrics
from carebench.server import supervisor
from carebench.server.config import ServerConfig
from carebench.server.peers import SOCKET_SUFFIX
from carebench.server.restarts import RestartPolicy, read_restarts
from carebench.server.setup import ServerSetup
from carebench.server.startup import StartupError
from carebench.server.supervisor import (
    FINAL_SUFFIX,
    STARTUP_FAILED,
    Supervisor,
    serve_processes,
)

SETUP = ServerSetup(server=ServerConfig(port=0, processes=2, quiet=True))
READY = ".ready"


#: Replace at once; give up after the third death (tests wait for nothing).
AT_ONCE = RestartPolicy(first_delay=0.0, max_deaths=2)


def leave_counts(directory: Path, requests: int) -> None:
    metrics = RequestMetrics("workerpool")
    for _ in range(requests):
        metrics.record("success", 0.002, 200)
    final = directory / f"{os.getpid()}{FINAL_SUFFIX}"
    final.write_bytes(msgspec.json.encode(metrics.counts()))


def serves_and_exits(pattern: str, setup: ServerSetup, port: int, directory: Path) -> None:
    """A child that served 3 requests and exits cleanly on its own."""
    leave_counts(directory, 3)


def cannot_start(pattern: str, setup: ServerSetup, port: int, directory: Path) -> None:
    """A child that fails to start, as run_child does on a bad setting."""
    sys.exit(STARTUP_FAILED)


def killed(pattern: str, setup: ServerSetup, port: int, directory: Path) -> None:
    """A child killed outright (an out-of-memory kill) before it leaves any counts."""
    os.kill(os.getpid(), signal.SIGKILL)


def serves_until_sigterm(pattern: str, setup: ServerSetup, port: int, directory: Path) -> None:
    """A child that says it is up, waits for SIGTERM, then leaves 2 requests' counts."""
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stopped.set())
    (directory / f"{os.getpid()}{READY}").touch()
    assert stopped.wait(30)
    leave_counts(directory, 2)


def fails_its_drain(pattern: str, setup: ServerSetup, port: int, directory: Path) -> None:
    """A child that says it is up and, asked to stop, exits with status 5."""
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stopped.set())
    (directory / f"{os.getpid()}{READY}").touch()
    assert stopped.wait(30)
    sys.exit(5)


def first_one_killed(pattern: str, setup: ServerSetup, port: int, directory: Path) -> None:
    """The first child to get here is killed (leaving a peer socket behind); every other
    one serves until SIGTERM."""
    try:
        os.close(os.open(directory / "first", os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        serves_until_sigterm(pattern, setup, port, directory)
        return
    (directory / f"{os.getpid()}{SOCKET_SUFFIX}").touch()
    os.kill(os.getpid(), signal.SIGKILL)


def run_group(
    tmp_path: Path,
    target: supervisor.ChildTarget,
    setup: ServerSetup = SETUP,
    policy: RestartPolicy = AT_ONCE,
) -> tuple[int, str]:
    out = io.StringIO()
    status = Supervisor("workerpool", setup, 0, tmp_path, out, policy).run(target)
    return status, out.getvalue()


def send_sigterm_when(ready: Callable[[], bool]) -> threading.Thread:
    """A thread that sends this process SIGTERM once `ready()` (polled, within 30 s)."""

    def send() -> None:
        deadline = time.monotonic() + 30
        while not ready() and time.monotonic() < deadline:
            time.sleep(0.01)  # polling the children's readiness files
        os.kill(os.getpid(), signal.SIGTERM)

    sender = threading.Thread(target=send)
    sender.start()
    return sender


def test_a_child_that_exits_unasked_is_replaced_until_the_parent_gives_up(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each exit is replaced at once; the third within the window (max_deaths 2) ends the
    group with status 1. Counts left by every child reach the totals line."""
    one = ServerSetup(server=ServerConfig(port=0, processes=1, quiet=True))
    status, out = run_group(tmp_path, serves_and_exits, one)
    assert "final stats (workerpool, 3 processes): 9 requests, 9 ok" in out
    assert status == 1
    errors = capsys.readouterr().err.splitlines()
    assert sum("(status 0); replaced by process" in line for line in errors) == 2
    assert "(restart 2)" in errors[1]
    assert errors[-1].startswith("error: server processes keep exiting: 3 exits within 60 s")
    assert errors[-1].endswith(", status 0); stopping the others")
    assert read_restarts(tmp_path) == 2


def test_children_that_keep_dying_stop_the_group(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two children killed at start-up again and again: at most two replacements, then an
    `error:` line and status 1; no totals, since no child left counts."""
    status, out = run_group(tmp_path, killed)
    assert status == 1
    assert out == ""
    errors = capsys.readouterr().err.splitlines()
    replaced = [line for line in errors if "replaced by process" in line]
    assert 1 <= len(replaced) <= 2
    assert all("(killed by SIGKILL)" in line for line in replaced)
    # The other child may be killed while the group stops, and says so after the give-up.
    gave_up = [
        index
        for index, line in enumerate(errors)
        if line.startswith("error: server processes keep exiting: 3 exits within 60 s")
    ]
    assert len(gave_up) == 1
    assert not any("replaced by process" in line for line in errors[gave_up[0] :])


def test_a_child_that_cannot_start_is_not_replaced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """STARTUP_FAILED: the next child would fail the same way, so the group stops at once."""
    status, out = run_group(tmp_path, cannot_start)
    assert status == 1
    errors = capsys.readouterr().err
    assert "could not start (see above); stopping the others" in errors
    assert "replaced" not in errors
    assert out == ""  # no counts were left: no totals line


def test_a_killed_child_is_replaced_and_the_group_serves_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One child killed: its stale peer socket is removed, a new child takes its place,
    the restart count is 1; SIGTERM then drains both living children, status 0."""
    sender = send_sigterm_when(lambda: len(list(tmp_path.glob(f"*{READY}"))) == 2)
    status, out = run_group(tmp_path, first_one_killed)
    sender.join()
    assert status == 0
    errors = capsys.readouterr().err
    assert "(killed by SIGKILL); replaced by process" in errors and "(restart 1)" in errors
    assert read_restarts(tmp_path) == 1
    assert list(tmp_path.glob(f"*{SOCKET_SUFFIX}")) == []
    line = "final stats (workerpool, 2 processes; the counts of 1 that died are lost): 4 requests"
    assert line in out


def test_sigterm_during_the_backoff_starts_no_child_and_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A child died and waits 30 s for its replacement: SIGTERM then drains the other at
    once, starts nothing, says the dead one was not replaced, and the status is 0."""
    group = Supervisor("workerpool", SETUP, 0, tmp_path, io.StringIO(), RestartPolicy(30.0))
    sender = send_sigterm_when(lambda: bool(group.replacements) and any(tmp_path.glob(f"*{READY}")))
    began = time.monotonic()
    status = group.run(first_one_killed)
    sender.join()
    assert status == 0
    assert time.monotonic() - began < 25  # the backoff was not waited out
    assert group.restarts == 0
    assert "(killed by SIGKILL); not replaced: stopping" in capsys.readouterr().err


def test_a_child_that_fails_its_drain_fails_the_group(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Asked to stop, a child exits with status 5: named on stderr, the parent's status is 1."""
    sender = send_sigterm_when(lambda: len(list(tmp_path.glob(f"*{READY}"))) == 2)
    status, _ = run_group(tmp_path, fails_its_drain)
    sender.join()
    assert status == 1
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 2 and all(line.endswith(" failed (status 5)") for line in errors)


def test_a_death_seen_after_a_signal_is_not_replaced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A child that died on its own, reaped after a signal came but before the signal was
    passed on: named, not replaced, and not a failure of the group."""
    child = multiprocessing.get_context("spawn").Process(
        target=killed, args=("workerpool", SETUP, 0, tmp_path)
    )
    child.start()
    child.join()
    group = Supervisor("workerpool", SETUP, 0, tmp_path, io.StringIO(), AT_ONCE)
    group.signals = 1
    group._reap(child)
    assert not group.failed and group.replacements == [] and group.lost == 1
    warning = f"warning: server process {child.pid} exited unexpectedly (killed by SIGKILL) "
    assert capsys.readouterr().err == warning + "while stopping\n"


def test_sigterm_is_passed_to_every_child(tmp_path: Path) -> None:
    """SIGTERM to the parent reaches both children; both drain, the parent exits 0."""
    sender = send_sigterm_when(lambda: len(list(tmp_path.glob(f"*{READY}"))) == 2)
    status, out = run_group(tmp_path, serves_until_sigterm)
    sender.join()
    assert status == 0
    assert "final stats (workerpool, 2 processes): 4 requests, 4 ok" in out
    assert signal.getsignal(signal.SIGTERM) is not None  # the previous handler is back


def test_serve_processes_prints_the_banner_and_url(tmp_path: Path) -> None:
    """The parent binds port 0, prints the group's banner and the URL children serve on."""
    out = io.StringIO()
    setup = ServerSetup(server=ServerConfig(port=0, processes=2))
    status = serve_processes("workerpool", setup, out, cannot_start)
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
            serve_processes("workerpool", setup, io.StringIO(), cannot_start)
