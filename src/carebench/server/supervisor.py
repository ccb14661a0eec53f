"""`serve --processes N`: a parent holds the port and runs N server processes on it.

Each child listens on a socket of its own bound to the same port with SO_REUSEPORT, and the
kernel hashes each new connection to one of them. One listening socket shared by all (what
uvicorn's `--workers` does) spread connections badly here: whichever process woke first
accepted a whole burst, so the 64 connections of a benchmark could all land on one process.
The parent binds the port first (resolving port 0, keeping it reserved) without listening,
so it receives no connections itself. A connection still waiting in the queue of a process
that dies is reset.

Each child builds its own app: its own pattern instance, backend and limits, as one pod
has in production, so the group's capacity is N x each limit. /metrics answers for the group
from whichever child the scrape reaches (server/peers.py). The children are spawned (a fresh
interpreter each, as uvicorn's `--workers`); what a child runs is the server's (`ChildTarget`,
e.g. uvicorn_runner.run_child).

Stopping: SIGTERM or SIGINT (Ctrl-C) to the parent is passed to every child as SIGTERM, and
each drains as a single server does (uvicorn_drain.py); a second signal cuts their drains
short. The children sit in their own process group, so a Ctrl-C at the terminal reaches them
once, through the parent, and does not count as the second signal. The parent exits when
every child has, with status 1 if one failed its drain.

A child that exits unasked (a crash, an out-of-memory kill, `kill -9`) is replaced, as
gunicorn's and uvicorn's supervisors replace a dead worker: after a backoff, by a new process
with the same settings on the same port, while the others serve on (server/restarts.py says
how long, and when the parent gives up instead: it drains the others and exits 1). Its counts
are lost with it. The parent checks the settings a child would reject before it starts any
(`startup.check_start`), so a bad one is the parent's `error:` and exit 2, as with one
process. A child that could not start at all anyway (`STARTUP_FAILED`: e.g. an audit log made
unwritable since the parent's check) is not replaced: the next would fail the same way. A
child whose parent dies drains and exits too (see `exit_with_parent`).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType
from typing import NamedTuple, Protocol, TextIO, cast

import msgspec

from carebench.metrics.requests import RequestCounts, RequestMetrics
from carebench.server.app import CareBenchApp
from carebench.server.peers import SOCKET_SUFFIX
from carebench.server.restarts import (
    RestartBackoff,
    RestartPolicy,
    describe_exit,
    write_restarts,
)
from carebench.server.setup import ServerSetup
from carebench.server.startup import (
    banner_lines,
    bind_socket,
    check_start,
    listening_line,
    stats_line,
    url_of,
)

#: How often a child checks that its parent still runs (seconds).
PARENT_CHECK_INTERVAL = 1.0
FINAL_SUFFIX = ".final.json"
#: The exit status of a child that could not start (its error printed): not replaced.
STARTUP_FAILED = 3


class ChildTarget(Protocol):
    """What a spawned child runs: serve `pattern` on `port` (binding it with SO_REUSEPORT)
    until SIGTERM, meeting the others in `directory`, then `report_final`."""

    def __call__(self, pattern: str, setup: ServerSetup, port: int, directory: Path) -> None: ...


def serve_processes(pattern: str, setup: ServerSetup, out: TextIO, target: ChildTarget) -> int:
    """Hold the port, run `--processes` children on it until stopped; the exit status."""
    server = setup.server
    check_start(setup)
    sock = reserve_port(server.host, server.port)
    try:
        if not server.quiet:
            print("\n".join(banner_lines(pattern, setup)), file=out)
        host, port = sock.getsockname()[:2]
        scheme = "https" if server.tls else "http"
        print(listening_line(url_of(host, port, scheme), pattern), file=out, flush=True)
        with tempfile.TemporaryDirectory(prefix="carebench-processes-") as directory:
            supervisor = Supervisor(pattern, setup, port, Path(directory), out)
            return supervisor.run(target)
    finally:
        sock.close()


def reserve_port(host: str, port: int) -> socket.socket:
    """The group's port, bound with SO_REUSEPORT (not listening) so the children can join it.

    Bound without SO_REUSEPORT first: that fails while anything listens on the port, another
    `serve --processes` group included, which a bind with it would silently join (the kernel
    would then spread connections over both groups)."""
    with bind_socket(host, port) as probe:
        port = probe.getsockname()[1]
    return bind_socket(host, port, reuse_port=True)


class Replacement(NamedTuple):
    """A process that died unasked, to be replaced at `due` (monotonic seconds)."""

    due: float
    delay: float
    pid: int | None
    exitcode: int | None


class Supervisor:
    """Starts the children, replaces those that die, passes signals on, waits for all of them
    and reports the totals.

    The signal handler only counts signals and wakes the loop (through a pipe); the loop
    passes them on, so a child gets exactly one SIGTERM per signal the parent received, even
    one started while a signal arrived.
    """

    def __init__(
        self,
        pattern: str,
        setup: ServerSetup,
        port: int,
        directory: Path,
        out: TextIO,
        policy: RestartPolicy | None = None,
    ) -> None:
        self.pattern = pattern
        self.setup = setup
        self.port = port
        self.directory = directory
        self.out = out
        self.backoff = RestartBackoff(policy or RestartPolicy())
        self.children: dict[int, BaseProcess] = {}  # by sentinel
        self.replacements: list[Replacement] = []
        self.restarts = 0
        #: Children that exited unasked without leaving their counts.
        self.lost = 0
        #: SIGTERM and SIGINT received (only the signal handler writes it).
        self.signals = 0
        self.gave_up = False
        self.failed = False
        self._sigterms_sent: dict[int, int] = {}  # by pid
        self._target: ChildTarget | None = None
        self._wake = -1

    @property
    def stopping(self) -> bool:
        """Whether the group is stopping: a signal came, or the parent gave up."""
        return self.signals > 0 or self.gave_up

    def run(self, target: ChildTarget) -> int:
        """Serve until stopped; 0 when every child asked to stop drained and exited cleanly,
        else 1 (one failed its drain, or could not start, or they kept dying)."""
        self._target = target
        wake, self._wake = os.pipe()
        os.set_blocking(self._wake, False)
        signals = (signal.SIGTERM, signal.SIGINT)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in signals}
        try:
            for _ in range(self.setup.server.processes):
                if self.stopping:
                    break
                self._start()
            self._supervise(wake)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            os.close(wake)
            os.close(self._wake)
        self._print_totals()
        return 1 if self.failed else 0

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.signals += 1
        with contextlib.suppress(OSError):  # the pipe is full: the loop is woken already
            os.write(self._wake, b"\0")

    def _start(self) -> BaseProcess:
        child = multiprocessing.get_context("spawn").Process(
            target=self._target,
            args=(self.pattern, self.setup, self.port, self.directory),
            name="carebench-server",
        )
        child.start()
        self.children[child.sentinel] = child
        return child

    def _supervise(self, wake: int) -> None:
        """Until every child has exited: pass signals on, reap, replace the dead when due."""
        while True:
            self._pass_signals_on()
            if not (self.children or self.replacements):
                return
            timeout = self._until_next_replacement()
            for ready in multiprocessing.connection.wait([*self.children, wake], timeout):
                if ready == wake:
                    os.read(wake, 64)
                else:
                    self._reap(self.children.pop(cast(int, ready)))
            self._replace_due()

    def _pass_signals_on(self) -> None:
        """One SIGTERM to each child per signal received (one in all when giving up)."""
        wanted = self.signals + int(self.gave_up)
        if wanted and self.replacements:
            self._drop_replacements()
        for child in self.children.values():
            pid = cast(int, child.pid)
            while self._sigterms_sent.get(pid, 0) < wanted and child.exitcode is None:
                os.kill(pid, signal.SIGTERM)
                self._sigterms_sent[pid] = self._sigterms_sent.get(pid, 0) + 1

    def _drop_replacements(self) -> None:
        if not self.gave_up:
            for dead in self.replacements:
                how = describe_exit(dead.exitcode)
                _say(
                    f"warning: server process {dead.pid} exited unexpectedly ({how}); "
                    "not replaced: stopping"
                )
        self.replacements.clear()

    def _reap(self, child: BaseProcess) -> None:
        child.join()
        pid, exitcode = child.pid, child.exitcode
        (self.directory / f"{pid}{SOCKET_SUFFIX}").unlink(missing_ok=True)  # a crash leaves it
        if self._sigterms_sent.pop(cast(int, pid), 0):
            # Killed by that SIGTERM before it set its handlers, it was not yet listening.
            if exitcode not in (0, -signal.SIGTERM):
                self.failed = True
                _say(f"error: server process {pid} failed ({describe_exit(exitcode)})")
            return
        self.lost += not (self.directory / f"{pid}{FINAL_SUFFIX}").exists()
        if self.stopping:
            how = describe_exit(exitcode)
            _say(f"warning: server process {pid} exited unexpectedly ({how}) while stopping")
        elif exitcode == STARTUP_FAILED:
            self._give_up(f"server process {pid} could not start (see above)")
        else:
            self._schedule_replacement(pid, exitcode)

    def _schedule_replacement(self, pid: int | None, exitcode: int | None) -> None:
        now = time.monotonic()
        delay = self.backoff.after_death(now)
        if delay is not None:
            self.replacements.append(Replacement(now + delay, delay, pid, exitcode))
            return
        policy = self.backoff.policy
        self._give_up(
            f"server processes keep exiting: {self.backoff.recent} exits within "
            f"{policy.window:g} s, more than {policy.max_deaths} (the last: process {pid}, "
            f"{describe_exit(exitcode)})"
        )

    def _give_up(self, why: str) -> None:
        _say(f"error: {why}; stopping the others")
        self.gave_up = self.failed = True

    def _until_next_replacement(self) -> float | None:
        if not self.replacements:
            return None
        return max(0.0, min(dead.due for dead in self.replacements) - time.monotonic())

    def _replace_due(self) -> None:
        now = time.monotonic()
        for dead in [dead for dead in self.replacements if dead.due <= now]:
            if self.stopping:
                return  # the next round drops them, saying so
            self.replacements.remove(dead)
            child = self._start()
            self.restarts += 1
            write_restarts(self.directory, self.restarts)
            _say(
                f"warning: server process {dead.pid} exited unexpectedly "
                f"({describe_exit(dead.exitcode)}); replaced by process {child.pid} after "
                f"{dead.delay:g} s (restart {self.restarts})"
            )

    def _print_totals(self) -> None:
        parts = [
            msgspec.json.decode(path.read_bytes(), type=RequestCounts)
            for path in sorted(self.directory.glob(f"*{FINAL_SUFFIX}"))
        ]
        if parts:
            label = f"{self.pattern}, {len(parts)} processes"
            if self.lost:
                label += f"; the counts of {self.lost} that died are lost"
            line = stats_line(RequestMetrics.added(parts).snapshot(), label)
            print(line, file=self.out, flush=True)


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def child_socket(setup: ServerSetup, port: int) -> socket.socket:
    """In a child: leave the terminal's process group (signals come through the parent
    only), then bind the group's port beside the others."""
    os.setpgrp()
    return bind_socket(setup.server.host, port, reuse_port=True)


def report_final(directory: Path, app: CareBenchApp) -> None:
    """In a child that has drained: leave its counts for the parent's totals and print its
    own final stats."""
    pid = os.getpid()
    (directory / f"{pid}{FINAL_SUFFIX}").write_bytes(msgspec.json.encode(app.metrics.counts()))
    label = f"{app.pattern.name}, process {pid}"
    print(stats_line(app.metrics.snapshot(), label), flush=True)


async def exit_with_parent(stop: Callable[[], None]) -> None:
    """In a child: call `stop` if the parent goes (killed outright), so no orphan keeps the
    port."""
    parent = os.getppid()
    while True:
        await asyncio.sleep(PARENT_CHECK_INTERVAL)  # a poll: no event tells a parent's death
        if os.getppid() != parent:
            stop()
            return
