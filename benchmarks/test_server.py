"""The server's cost per request without sockets: uvicorn with carebench's protocol, the app,
the worker pool and the simulated database at zero latency, as benchmarks/reference.sh runs
it against the Go reference, but with requests fed to the protocol and responses taken from
its transport in-process (what is left is the Python and C work of the request path; the
kernel's share is in `make overhead` and benchmarks/reference.sh).

Not collected by `make test`; run with `make bench`.
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvloop
from pytest_benchmark.fixture import BenchmarkFixture
from uvicorn.lifespan.on import LifespanOn
from uvicorn.server import ServerState

from carebench.backends.simulator import SimulatorConfig
from carebench.patterns.base import PatternConfig
from carebench.server.setup import ServerSetup
from carebench.server.startup import build_app
from carebench.server.uvicorn_runner import uvicorn_config
from conftest import SummaryLog

#: Connections fed at once (wrk -c64 in benchmarks/reference.sh) and requests per batch.
CONNECTIONS = 64
BATCH = 64 * 320
REQUEST = b"GET /api/v1/patients?id=P12345 HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\r\n"
PEERS = {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}


class Round:
    """Counts the connections still waiting for their answer in one round of requests."""

    def __init__(self) -> None:
        self.waiting = 0
        self.answered = asyncio.Event()

    def begin(self, connections: int) -> None:
        self.waiting = connections
        self.answered.clear()

    def one_answered(self) -> None:
        self.waiting -= 1
        if self.waiting == 0:
            self.answered.set()


class ResponseBox(asyncio.Transport):
    """A connection's transport that keeps what the server writes."""

    def __init__(self, round_: Round) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closing = False
        self._round = round_

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))
        if len(self.writes) == 1:
            self._round.one_answered()

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return PEERS.get(name, default)

    def pause_reading(self) -> None:
        return None

    def resume_reading(self) -> None:
        return None


class InProcessServer:
    """The server stack on a uvloop event loop, with CONNECTIONS open connections."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        setup = ServerSetup(
            patterns=PatternConfig(workers=64, queue_size=1000),
            database=SimulatorConfig(0.0, 0.0, 0.0, profile="ideal"),
        )
        self.config = uvicorn_config(build_app("workerpool", setup), setup.server)
        self.config.load()
        self.lifespan = LifespanOn(self.config)
        self.loop = loop
        self.connections: list[tuple[Any, ResponseBox]] = []
        self.round = Round()
        self.answered = 0

    async def start(self) -> None:
        await self.lifespan.startup()
        state = ServerState()
        for _ in range(CONNECTIONS):
            protocol = self.config.http_protocol_class(  # type: ignore[call-arg]
                config=self.config, server_state=state, app_state={}, _loop=self.loop
            )
            box = ResponseBox(self.round)
            protocol.connection_made(box)
            self.connections.append((protocol, box))

    async def batch(self) -> None:
        """BATCH requests, CONNECTIONS at a time, each answered before the next round."""
        for _ in range(BATCH // CONNECTIONS):
            self.round.begin(len(self.connections))
            for protocol, _box in self.connections:
                protocol.data_received(REQUEST)
            await self.round.answered.wait()
            for _, box in self.connections:
                assert box.writes[0].startswith(b"HTTP/1.1 200 OK"), box.writes[0][:60]
                self.answered += len(box.writes)
                box.writes.clear()

    async def stop(self) -> None:
        for protocol, box in self.connections:
            box.closing = True
            protocol.connection_lost(None)
        await self.lifespan.shutdown()


def test_request_through_the_server(benchmark: BenchmarkFixture, summary: SummaryLog) -> None:
    """One legacy GET through protocol, app, worker pool and simulator (one write each)."""
    loop = uvloop.new_event_loop()
    server = InProcessServer(loop)
    try:
        loop.run_until_complete(server.start())
        benchmark(lambda: loop.run_until_complete(server.batch()))
        loop.run_until_complete(server.stop())
    finally:
        loop.close()
    # Every request of every batch (calibration runs included) got its one write.
    assert server.answered > 0
    assert server.answered % BATCH == 0
    benchmark.extra_info["requests"] = BATCH
    best = benchmark.stats.stats.min / BATCH * 1e6  # type: ignore[union-attr]
    summary.note(f"server request path in process (test_server.py): {best:.2f} us/request (min)")
