"""A closed connection's protocol is freed by reference counting, not left to the collector.

The server runs its cyclic collector rarely (server/gc_tuning.py), so a cycle per connection
is memory held until then: 2,007 connections' worth (protocol, uvloop transport, flow
control, response cycle, ...) after three runs of 1,000 connections. These tests turn the
collector off, open and close connections to an in-process server on uvloop (the server's
loop) and asyncio's, and check with weak references that every protocol is gone.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import weakref
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, ClassVar, cast

import pytest
import uvicorn
import uvloop

from carebench.server.http import Receive, Scope, Send
from carebench.server.uvicorn_protocol import ConnectionLimits, OneWriteHttpToolsProtocol
from tests.patterns.test_failure_references import collector_off
from tests.server.test_uvicorn_protocol import TIGHT, get, no_body_app, read_all, statuses

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "uvloop": uvloop.new_event_loop,
    "asyncio": asyncio.new_event_loop,
}


class TrackedProtocol(OneWriteHttpToolsProtocol):
    """The server's protocol, with a weak reference to each instance and a count of the
    connections lost (set per test by `tracked`)."""

    instances: ClassVar[list[weakref.ref[OneWriteHttpToolsProtocol]]]
    lost: ClassVar[asyncio.Queue[None]]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.instances.append(weakref.ref(self))

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.lost.put_nowait(None)


@asynccontextmanager
async def tracked(
    app: Any, limits: ConnectionLimits
) -> AsyncIterator[tuple[type[TrackedProtocol], int]]:
    """An in-process uvicorn server with a TrackedProtocol class of its own, and its port;
    started before the collector is turned off."""
    attributes = {"limits": limits, "instances": [], "lost": asyncio.Queue()}
    protocol = cast(type[TrackedProtocol], type("Tracked", (TrackedProtocol,), attributes))
    config: Any = uvicorn.Config(
        app,
        http=protocol,
        ws="none",
        lifespan="off",
        log_level="warning",
        timeout_graceful_shutdown=1,  # a failed test's held request must not hang it
    )
    server = uvicorn.Server(config)
    sock = socket.create_server(("127.0.0.1", 0))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        with collector_off():
            yield protocol, sock.getsockname()[1]
    finally:
        server.should_exit = True
        await serving
        sock.close()


async def all_lost(protocol: type[TrackedProtocol]) -> list[OneWriteHttpToolsProtocol | None]:
    """Wait until every connection made was lost; what is left of each protocol."""
    for _ in protocol.instances:
        await asyncio.wait_for(protocol.lost.get(), 5)
    # The loop's callback that ran connection_lost holds the transport until it returns.
    await asyncio.sleep(0)
    return [instance() for instance in protocol.instances]


def run_on(loop: str, scenario: Coroutine[Any, Any, None]) -> None:
    with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
        runner.run(scenario)


@pytest.mark.parametrize("loop", list(LOOPS))
def test_closed_connections_leave_no_protocol_behind(loop: str) -> None:
    """Connections that made requests (kept alive, then closed by the client) and ones the
    server refused (431, 400) or closed idle (read timeout) are all freed once lost."""

    async def scenario() -> None:
        async with tracked(no_body_app, TIGHT) as (protocol, port):
            for i in range(5):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(get(f"/a{i}") + get(f"/b{i}"))
                await asyncio.wait_for(reader.readuntil(f"/b{i}".encode()), 5)
                writer.close()
            many = [f"x-h{i}: v" for i in range(6)]
            assert statuses(await read_all(port, get("/", *many))) == [431]
            assert statuses(await read_all(port, get("/a") + b"GARBAGE\r\n\r\n")) == [200, 400]
            assert await read_all(port, b"") == b""
            assert await all_lost(protocol) == [None] * 8

    run_on(loop, scenario())


@pytest.mark.parametrize("loop", list(LOOPS))
def test_a_client_that_leaves_mid_request_leaves_no_protocol_behind(loop: str) -> None:
    """A client that resets while its request is answered, with more pipelined behind it:
    once the app has finished the request it was running, nothing of the connection stays."""

    async def scenario() -> None:
        started, release, finished = asyncio.Event(), asyncio.Event(), asyncio.Event()

        async def held_app(scope: Scope, receive: Receive, send: Send) -> None:
            started.set()
            await release.wait()
            await no_body_app(scope, receive, send)
            finished.set()

        async with tracked(held_app, ConnectionLimits()) as (protocol, port):
            client = socket.create_connection(("127.0.0.1", port))
            client.sendall(get("/a") + get("/b") + get("/c"))
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            await asyncio.wait_for(started.wait(), 5)
            client.close()
            # Reading waits for the pipelined requests: the reset is seen at the first write.
            release.set()
            await asyncio.wait_for(finished.wait(), 5)
            await asyncio.wait_for(protocol.lost.get(), 5)
            await asyncio.sleep(0)  # the task's last step returns
            assert [instance() for instance in protocol.instances] == [None]

    run_on(loop, scenario())
