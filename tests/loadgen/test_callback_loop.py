"""The closed loop over real sockets, run both ways: a task per client (any channel) and the
callback loop (HTTP channels); the same load must give the same counts and outcomes."""

from __future__ import annotations

import asyncio
import itertools
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from carebench.loadgen.channels import Channel, HttpChannel
from carebench.loadgen.engine import Engine
from carebench.loadgen.results import RunRecorder

STATUSES = {b"ok": 200, b"shed": 503, b"fail": 500, b"gone": 404}


class TaskOnly:
    """An HttpChannel seen only through the Channel protocol: the engine runs a task per
    client for it, as for any channel that is not an HttpChannel."""

    def __init__(self, channel: HttpChannel) -> None:
        self._channel = channel
        self.retry_after = 0.0

    async def fetch(self, patient_id: str, priority: str | None = None) -> int:
        status = await self._channel.fetch(patient_id, priority)
        self.retry_after = self._channel.retry_after
        return status

    def reset(self) -> None:
        self._channel.reset()

    def close(self) -> None:
        self._channel.close()


@asynccontextmanager
async def server() -> AsyncIterator[tuple[int, list[int]]]:
    """Answers ?id=ok|shed|fail|gone with its status; never answers ?id=hang. Yields the port
    and a list that counts accepted connections."""
    connections: list[int] = []
    handlers: set[asyncio.Task[None]] = set()

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        handlers.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                patient = head.split(b"id=", 1)[1].split(b" ", 1)[0]
                if patient == b"hang":
                    await reader.read()
                    break
                status = STATUSES[patient]
                writer.write(b"HTTP/1.1 %d X\r\nContent-Length: 2\r\n\r\nok" % status)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    listener = await asyncio.start_server(respond, "127.0.0.1", 0)
    try:
        yield listener.sockets[0].getsockname()[1], connections
    finally:
        listener.close()
        # The clients are closed by now, so every handler reads EOF and ends.
        await asyncio.wait_for(asyncio.gather(*handlers, return_exceptions=True), 5)


def engine_for(port: int, ids: list[str], clients: int, via: str, timeout: float = 5.0) -> Engine:
    channels: list[Channel] = [HttpChannel("127.0.0.1", port) for _ in range(clients)]
    if via == "tasks":
        channels = [TaskOnly(channel) for channel in channels]  # type: ignore[arg-type]
    cycle = itertools.cycle(ids)
    return Engine(channels, lambda: next(cycle), timeout, RunRecorder(time.perf_counter()))


def close(engine: Engine) -> None:
    for channel in engine.channels:
        channel.close()


by_path = pytest.mark.parametrize("via", ["callbacks", "tasks"])


@by_path
async def test_exact_counts_and_statuses(via: str) -> None:
    """101 requests over 7 clients: each sent and counted once, by status and outcome."""
    async with server() as (port, connections):
        engine = engine_for(port, ["ok", "shed", "fail", "gone"], clients=7, via=via)
        await engine.closed_loop(101)
        close(engine)
    summary = engine.recorder.summary(1.0)
    assert summary["total_requests"] == 101 == engine.sent
    assert sum(summary["status_codes"].values()) == 101
    assert set(summary["status_codes"]) == {"200", "503", "500", "404"}
    outcomes = summary["outcomes"]
    assert outcomes["rejected"] == summary["status_codes"]["503"]
    assert outcomes["backend_error"] == summary["status_codes"]["500"]
    assert outcomes["timeout"] == outcomes["connection_error"] == 0
    assert len(connections) == 7


@by_path
async def test_hung_requests_time_out_and_reconnect(via: str) -> None:
    """A request the server never answers is a timeout after --timeout; the client reconnects
    and carries on."""
    async with server() as (port, connections):
        engine = engine_for(port, ["ok", "hang"], clients=2, via=via, timeout=0.05)
        await engine.closed_loop(8)
        close(engine)
    outcomes = engine.recorder.summary(1.0)["outcomes"]
    assert (outcomes["success"], outcomes["timeout"]) == (4, 4)
    assert engine.recorder.latency["timeout"].summary_ms()["min"] >= 50.0
    assert len(connections) >= 3  # a timed-out connection is replaced


@by_path
async def test_refused_connections_are_connection_errors(via: str) -> None:
    """With nothing listening every request is a connection error, each counted once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    engine = engine_for(port, ["ok"], clients=3, via=via)
    await engine.closed_loop(9)
    close(engine)
    outcomes = engine.recorder.summary(1.0)["outcomes"]
    assert outcomes["connection_error"] == 9 == engine.sent


@by_path
async def test_time_bound_run_stops_sending_at_until(via: str) -> None:
    """With `until` instead of a budget, nothing is sent after it; what was sent is counted."""
    async with server() as (port, _):
        engine = engine_for(port, ["ok"], clients=4, via=via)
        start = time.perf_counter()
        until = start + 0.1
        await engine.closed_loop(float("inf"), until=until)
        close(engine)
    assert engine.recorder.total == engine.sent > 0
    assert start < engine.last_send <= until


async def test_cancelling_the_callback_loop_stops_it() -> None:
    """Cancelling a run stops the callback clients: nothing is recorded afterwards."""
    async with server() as (port, _):
        engine = engine_for(port, ["hang"], clients=3, via="callbacks", timeout=60.0)
        run = asyncio.ensure_future(engine.closed_loop(100))
        await asyncio.sleep(0.05)
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
        close(engine)
    assert engine.recorder.total == 0
    assert engine.sent == 3
