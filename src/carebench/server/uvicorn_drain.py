"""uvicorn's Server with carebench's shutdown promises (`serve --drain-timeout`).

On SIGINT or SIGTERM uvicorn 0.54 stops accepting (closes the listener: new connections are
refused), closes idle keep-alive connections, lets running requests finish with
`connection: close`, then runs the lifespan shutdown. What it does not do, measured against
it with tests/reliability/test_shutdown.py (issue 11):

- a second SIGTERM changed nothing (only a second SIGINT forces), and even a forced exit
  waited for every running request: uvloop's `Server.wait_closed()` waits for all connections;
- `timeout_graceful_shutdown` is whole seconds, and the pattern's shutdown then waited the
  drain timeout again: up to twice `--drain-timeout` in all;
- requests still running when it ran out were cancelled into one "Exception in ASGI
  application" traceback each, answered 500, and missing from the final stats.

Here the drain timeout runs from the first signal and covers the wait for requests and the
pattern's shutdown together. When it is about to run out, or at a second SIGINT or SIGTERM,
the requests still running are cancelled and answered 503 with Retry-After
(`CareBenchApp.cut_drain`), and connections still open `CUT_GRACE` later are aborted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from types import FrameType

import uvicorn

from carebench.server.app import CareBenchApp

log = logging.getLogger("carebench.server")

#: How long cancelled requests get to write their 503 before their connections are aborted;
#: the cut comes this long before the drain timeout runs out (at most a quarter of it).
CUT_GRACE = 0.25


class DrainingServer(uvicorn.Server):
    """uvicorn.Server whose drain is bounded by the app's drain timeout and cut short by a
    second signal."""

    def __init__(self, config: uvicorn.Config, app: CareBenchApp) -> None:
        super().__init__(config)
        self.app = app
        #: The number of requests cut when the drain ran out or was forced.
        self.cut_requests = 0
        #: Set (through the loop, from the signal handler) at a second signal during the drain.
        self._forced: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self.should_exit:
            self.app.begin_drain()  # the drain timeout runs from the signal
        else:
            self.force_exit = True  # a second SIGINT or SIGTERM (uvicorn: SIGINT only)
            if self._loop is not None and self._forced is not None:
                self._loop.call_soon_threadsafe(self._forced.set)
        super().handle_exit(sig, frame)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.app.begin_drain()  # stopped for another reason than a signal (--limit-max-requests)
        self._loop = asyncio.get_running_loop()
        self._forced = asyncio.Event()
        if self.force_exit:
            self._forced.set()
        cutter = asyncio.create_task(self._cut_when_due(self._forced))
        try:
            await super().shutdown(sockets)
        finally:
            cutter.cancel()
        if self.force_exit:
            # uvicorn skips the lifespan shutdown when forced, and its task then dies by
            # cancellation with a traceback; cut_drain() left the pattern no time to wait.
            await self.lifespan.shutdown()

    async def _cut_when_due(self, forced: asyncio.Event) -> None:
        grace = min(CUT_GRACE, self.app.drain_timeout / 4)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(forced.wait(), max(0.0, self.app.drain_left() - grace))
        self.app.cut_drain()
        running = list(self.server_state.tasks)
        for task in running:
            task.cancel()
        if running:
            await asyncio.wait(running, timeout=CUT_GRACE if forced.is_set() else grace)
        open_connections = list(self.server_state.connections)
        for connection in open_connections:
            connection.transport.abort()
        self.cut_requests = len(running)
        if running or open_connections:
            why = "a second signal" if forced.is_set() else "the drain timeout"
            log.warning(
                "drain cut by %s: %d running requests answered 503, %d connections closed",
                why,
                len(running),
                len(open_connections),
            )
