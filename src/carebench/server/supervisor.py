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
every child has, with status 1 if one failed. A child that exits on its own (a crash, an
out-of-memory kill) is not restarted: the parent says so, drains the others and exits 1. A
restarted process would start its counts from zero and the group's totals would silently
drop; an orchestrator restarts the whole pod instead. A child whose parent dies drains and
exits too (see `exit_with_parent`).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
import tempfile
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType
from typing import Protocol, TextIO, cast

import msgspec

from carebench.metrics.requests import RequestCounts, RequestMetrics
from carebench.server.app import CareBenchApp
from carebench.server.setup import ServerSetup
from carebench.server.startup import (
    banner_lines,
    bind_socket,
    check_backend,
    listening_line,
    stats_line,
    url_of,
)

#: How often a child checks that its parent still runs (seconds).
PARENT_CHECK_INTERVAL = 1.0
FINAL_SUFFIX = ".final.json"


class ChildTarget(Protocol):
    """What a spawned child runs: serve `pattern` on `port` (binding it with SO_REUSEPORT)
    until SIGTERM, meeting the others in `directory`, then `report_final`."""

    def __call__(self, pattern: str, setup: ServerSetup, port: int, directory: Path) -> None: ...


def serve_processes(pattern: str, setup: ServerSetup, out: TextIO, target: ChildTarget) -> int:
    """Hold the port, run `--processes` children on it until stopped; the exit status."""
    server = setup.server
    check_backend(setup)
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


class Supervisor:
    """Starts the children, passes signals on, waits for all of them, reports the totals."""

    def __init__(
        self, pattern: str, setup: ServerSetup, port: int, directory: Path, out: TextIO
    ) -> None:
        self.pattern = pattern
        self.setup = setup
        self.port = port
        self.directory = directory
        self.out = out
        self.children: list[BaseProcess] = []
        self.stopping = False

    def run(self, target: ChildTarget) -> int:
        """Serve until stopped; 0 when every child drained and exited cleanly, else 1."""
        context = multiprocessing.get_context("spawn")
        signals = (signal.SIGTERM, signal.SIGINT)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in signals}
        try:
            for _ in range(self.setup.server.processes):
                if self.stopping:
                    break
                child = context.Process(
                    target=target,
                    args=(self.pattern, self.setup, self.port, self.directory),
                    name="carebench-server",
                )
                child.start()
                self.children.append(child)
            failed = self._wait()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self._print_totals()
        return 1 if failed else 0

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True
        self._signal_children()

    def _signal_children(self) -> None:
        for child in self.children:
            if child.pid is not None and child.exitcode is None:
                os.kill(child.pid, signal.SIGTERM)

    def _wait(self) -> bool:
        """Wait for every child; whether one failed or exited before it was asked to."""
        running = {child.sentinel: child for child in self.children}
        failed = False
        while running:
            for sentinel in multiprocessing.connection.wait(list(running)):
                child = running.pop(cast(int, sentinel))
                child.join()
                if self.stopping and child.exitcode == 0:
                    continue
                failed = True
                self._report(child)
        return failed

    def _report(self, child: BaseProcess) -> None:
        """A child failed: say so; if nobody asked it to stop, stop the others."""
        why = "failed" if self.stopping else "exited unexpectedly"
        after = "" if self.stopping else "; stopping the others"
        message = f"error: server process {child.pid} {why} (status {child.exitcode}){after}"
        print(message, file=sys.stderr, flush=True)
        if not self.stopping:
            self.stopping = True
            self._signal_children()

    def _print_totals(self) -> None:
        parts = [
            msgspec.json.decode(path.read_bytes(), type=RequestCounts)
            for path in sorted(self.directory.glob(f"*{FINAL_SUFFIX}"))
        ]
        if parts:
            line = stats_line(
                RequestMetrics.added(parts).snapshot(), f"{self.pattern}, {len(parts)} processes"
            )
            print(line, file=self.out, flush=True)


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
