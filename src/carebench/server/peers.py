"""How the processes of `serve --processes N` answer /metrics for the whole group.

Every process listens on a Unix socket of its own, `<pid>.sock` in a directory the group
shares, and writes its `ProcessState` to whoever connects. The process the kernel hands a
scrape to reads every other socket in the directory at that moment and answers with the
totals (metrics/processes.py), so whichever process answers, the totals are the same and
current. Nothing runs per patient request: the exchange happens only at a scrape, and a
single process (`--processes 1`) never sets any of this up.

A socket appears once its process has started its backend and pattern (it is ready), and
goes with the process (the parent removes the socket of one that crashed); one that does not
answer within `PEER_TIMEOUT` is reported in `unreachable_processes` instead of stalling the
scrape. A process that replaced a dead one (server/restarts.py) joins when it is ready; the
count of replacements comes from the file the parent keeps in the directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

import msgspec

from carebench.metrics.process import process_stats
from carebench.metrics.processes import GroupTotals, ProcessState
from carebench.metrics.prometheus import CONTENT_TYPE, render
from carebench.responses import encode_error
from carebench.server.app import CareBenchApp
from carebench.server.http import Receive, Scope, Send, query_param, request_id_from, send_body
from carebench.server.restarts import read_restarts

#: How long a scrape waits for another process's state (a busy process answers within one
#: turn of its event loop).
PEER_TIMEOUT = 2.0
SOCKET_SUFFIX = ".sock"


class ProcessGroup:
    """One process's part in the group: its peer socket and the group's /metrics."""

    def __init__(self, directory: Path, app: CareBenchApp, pid: int | None = None) -> None:
        self.directory = directory
        self.app = app
        #: The process's id (tests running several groups in one process give their own).
        self.pid = os.getpid() if pid is None else pid
        self.path = directory / f"{self.pid}{SOCKET_SUFFIX}"
        self._server: asyncio.AbstractServer | None = None

    def attach(self) -> None:
        """Open the peer socket when the app has started, and answer /metrics for the group."""
        self.app.on_startup = self.start
        self.app.route("/metrics", self.metrics)

    async def start(self) -> None:
        self._server = await asyncio.start_unix_server(self._answer_peer, path=str(self.path))

    async def close(self) -> None:
        """Stop answering the other processes (the socket file goes too)."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        self.path.unlink(missing_ok=True)

    def state(self) -> ProcessState:
        """This process's state, exactly: what the group's totals add up."""
        app, times = self.app, os.times()
        state: ProcessState = {
            "pid": self.pid,
            "requests": app.metrics.counts(),
            "pattern_state": app.pattern.stats(),
            "backend": app.backend.stats(),
            "backend_health": app.backend.health(),
            "process": process_stats(),
            "cpu_seconds": times.user + times.system,
        }
        if app.audit is not None:
            state["audit"] = app.audit.stats()
        return state

    async def _answer_peer(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            writer.write(msgspec.json.encode(self.state()))
            await writer.drain()
        finally:
            writer.close()

    async def totals(self) -> GroupTotals:
        """Every process's state now: this one's, each peer socket's in the directory, and
        how many processes the parent has replaced."""
        peers = [
            int(path.name.removesuffix(SOCKET_SUFFIX))
            for path in self.directory.glob(f"*{SOCKET_SUFFIX}")
            if path != self.path
        ]
        answers = await asyncio.gather(*(self._ask(pid) for pid in peers))
        states = [self.state(), *(state for state in answers if state is not None)]
        unreachable = [pid for pid, state in zip(peers, answers, strict=True) if state is None]
        return GroupTotals(states, unreachable, read_restarts(self.directory))

    async def _ask(self, pid: int) -> ProcessState | None:
        path = self.directory / f"{pid}{SOCKET_SUFFIX}"
        try:
            async with asyncio.timeout(PEER_TIMEOUT):
                reader, writer = await asyncio.open_unix_connection(str(path))
                try:
                    data = await reader.read()
                finally:
                    writer.close()
                    with contextlib.suppress(OSError):
                        await writer.wait_closed()
            state: ProcessState = msgspec.json.decode(data)
        except (OSError, TimeoutError, msgspec.DecodeError):
            return None  # exited, draining its last requests away, or stuck
        return state

    async def metrics(self, scope: Scope, receive: Receive, send: Send) -> None:
        """GET /metrics for the group: JSON or Prometheus, as a single process serves it."""
        request_id = request_id_from(scope["headers"])
        fmt = query_param(scope.get("query_string", b""), b"format") or "json"
        if fmt not in ("json", "prometheus"):
            message = f"unknown format {fmt!r}: use json or prometheus"
            await send_body(send, 400, encode_error(message, request_id), request_id)
            return
        totals = await self.totals()
        if fmt == "prometheus":
            body = render(totals.registry())
            await send_body(send, 200, body, request_id, CONTENT_TYPE.encode())
        else:
            await send_body(send, 200, msgspec.json.encode(totals.document()), request_id)
