"""The load generator's cost per request, piece by piece (see benchmarks/client_vs_wrk.py for
the whole generator against wrk): recording an outcome, parsing a response, the engine loop.

Each benchmark times a batch of BATCH requests; divide the time by BATCH for the per-request
cost. Not collected by `make test`; run with `make bench`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest
import uvloop
from pytest_benchmark.fixture import BenchmarkFixture

from carebench.loadgen import callback_loop as python_callback_loop
from carebench.loadgen import channels, compiled
from carebench.loadgen import engine as engine_module
from carebench.loadgen import protocol as python_protocol
from carebench.loadgen.callback_loop import CallbackLoop
from carebench.loadgen.client import HttpConnection, Response, _ResponseProtocol
from carebench.loadgen.engine import Engine
from carebench.loadgen.protocol import ResponseProtocol
from carebench.loadgen.results import RunRecorder
from conftest import SummaryLog

BATCH = 10_000
LOOP_BATCH = 100_000
#: What nginx answers in benchmarks/client_vs_wrk.py: five headers and a small JSON body.
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sat, 28 Nov 2026 07:30:00 GMT\r\n"
    b"Content-Type: application/json\r\nContent-Length: 67\r\nConnection: keep-alive\r\n\r\n"
    b'{"id":"P12345","name":"Test Patient","status":"active","version":1}'
)


class InstantChannel:
    """Answers 200 at once, without a socket: what is left is the engine's own cost."""

    retry_after = 0.0

    async def fetch(self, patient_id: str, priority: str | None = None) -> int:
        return 200

    def reset(self) -> None:
        return None

    def close(self) -> None:
        return None


class NullTransport(asyncio.Transport):
    """Swallows writes, so the protocol can be driven without a socket."""

    def write(self, data: bytes | bytearray | memoryview) -> None:
        return None


def test_record_outcome(benchmark: BenchmarkFixture) -> None:
    """RunRecorder.record for a closed-loop success (histograms, timeline, status counts)."""

    def record_batch() -> None:
        recorder = RunRecorder(0.0)
        for i in range(BATCH):
            recorder.record("success", 0.0005 + i * 1e-8, i * 1e-4, 200)

    benchmark(record_batch)
    benchmark.extra_info["requests"] = BATCH


def test_parse_response(benchmark: BenchmarkFixture) -> None:
    """Send a request and parse nginx's answer to it (httptools and the protocol callbacks)."""
    loop = uvloop.new_event_loop()
    protocol = _ResponseProtocol(loop)
    protocol.connection_made(NullTransport())
    request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"

    def parse_batch() -> None:
        for _ in range(BATCH):
            waiter = protocol.send(request)
            protocol.data_received(RESPONSE)
            assert waiter.result().status == 200

    try:
        benchmark(parse_batch)
    finally:
        loop.close()
    benchmark.extra_info["requests"] = BATCH


def test_parse_response_callback(benchmark: BenchmarkFixture) -> None:
    """The same, settled through a callback (the closed loop's CallbackLoop) instead of a
    future."""
    loop = uvloop.new_event_loop()
    protocol = _ResponseProtocol(loop)
    protocol.connection_made(NullTransport())
    request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    statuses: list[int] = []

    def settled(response: Response | None, error: Exception | None) -> None:
        statuses.append(response.status if response else 0)

    def parse_batch() -> None:
        statuses.clear()
        for _ in range(BATCH):
            protocol.send_then(request, settled)
            protocol.data_received(RESPONSE)
        assert statuses == [200] * BATCH

    try:
        benchmark(parse_batch)
    finally:
        loop.close()
    benchmark.extra_info["requests"] = BATCH


def test_engine_closed_loop(benchmark: BenchmarkFixture) -> None:
    """The closed loop of 64 clients over instant channels: ids, deadlines, recording."""
    channels = [InstantChannel() for _ in range(64)]

    def run_batch() -> None:
        engine = Engine(channels, lambda: "P1", 5.0, RunRecorder(time.perf_counter()))
        uvloop.run(engine.closed_loop(BATCH))
        assert engine.recorder.total == BATCH

    benchmark(run_batch)
    benchmark.extra_info["requests"] = BATCH


class EchoTransport(asyncio.Transport):
    """Answers every request with RESPONSE on the next turn of the event loop, as a socket
    would deliver it: what is measured is the closed loop's own cost, without system calls."""

    def __init__(self, protocol: ResponseProtocol) -> None:
        super().__init__()
        self._protocol = protocol
        self._loop = asyncio.get_running_loop()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._loop.call_soon(self._protocol.data_received, RESPONSE)

    def close(self) -> None:
        return None

    def abort(self) -> None:
        return None


def echo_connection_of(
    protocol_class: type[ResponseProtocol],
) -> Callable[..., Awaitable[HttpConnection]]:
    """HttpConnection.open's stand-in: a connection of `protocol_class` over EchoTransport."""

    async def echo_connection(
        host: str,
        port: int,
        *,
        keep_body: bool = True,
        headers_for: frozenset[int] | None = None,
        tls: object = None,
    ) -> HttpConnection:
        protocol = protocol_class(asyncio.get_running_loop(), keep_body, headers_for)
        protocol.connection_made(EchoTransport(protocol))
        return HttpConnection(protocol, f"{host}:{port}")

    return echo_connection


#: The request path as it runs (the compiled build when there is a fresh one), and its Python
#: source, side by side: what the build saves per request.
IMPLEMENTATIONS: dict[str, tuple[type[ResponseProtocol], type[CallbackLoop]]] = {
    "chosen": (_ResponseProtocol, engine_module.CallbackLoop),
    "python": (python_protocol.ResponseProtocol, python_callback_loop.CallbackLoop),
}


@pytest.mark.parametrize("implementation", sorted(IMPLEMENTATIONS))
def test_callback_loop_over_http_channels(
    benchmark: BenchmarkFixture,
    monkeypatch: pytest.MonkeyPatch,
    summary: SummaryLog,
    implementation: str,
) -> None:
    """The closed loop as `loadtest --target` runs it (64 HTTP channels, the callback engine,
    the response parser, recording), every response arriving at once: its Python cost per
    request (the call_soon standing in for the socket adds ~0.2 us; a batch is larger than
    BATCH so opening the loop and 64 connections weighs little). `chosen` is what loadtest
    runs (compiled when built: see carebench.loadgen.compiled), `python` the source modules."""
    protocol_class, loop_class = IMPLEMENTATIONS[implementation]
    monkeypatch.setattr(HttpConnection, "open", staticmethod(echo_connection_of(protocol_class)))
    monkeypatch.setattr(engine_module, "CallbackLoop", loop_class)

    def run_batch() -> None:
        http = [channels.HttpChannel("127.0.0.1", 1) for _ in range(64)]
        engine = Engine(http, lambda: "P1", 5.0, RunRecorder(time.perf_counter()))
        uvloop.run(engine.closed_loop(LOOP_BATCH))
        assert engine.recorder.status_codes == {200: LOOP_BATCH}

    benchmark(run_batch)
    benchmark.extra_info["requests"] = LOOP_BATCH
    best = benchmark.stats.stats.min / LOOP_BATCH * 1e6  # type: ignore[union-attr]
    built = compiled.status()["callback_loop"] if implementation == "chosen" else "python"
    summary.note(
        f"load generator's closed loop in process (test_loadgen.py), {implementation} "
        f"({built}): {best:.2f} us/request (min)"
    )
