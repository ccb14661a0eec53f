"""One write per response: the head waits for the body, nothing is lost, reordered or held."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

import pytest
import uvicorn
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from carebench.server.http import Receive, Scope, Send, send_body
from carebench.server.uvicorn_protocol import (
    ConnectionLimits,
    HeadHoldingTransport,
    OneWriteCycle,
    OneWriteHttpToolsProtocol,
)


class RecordingTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def holding() -> tuple[HeadHoldingTransport, RecordingTransport, list[str]]:
    real, gone = RecordingTransport(), []
    return HeadHoldingTransport(real, lambda: gone.append("gone")), real, gone  # type: ignore[arg-type]


def test_head_and_first_body_chunk_go_out_in_one_write() -> None:
    """The head is held until the body and both leave in a single write; later ones pass."""
    transport, real, _ = holding()
    transport.write(b"HEAD")
    assert real.writes == []
    transport.write(b"body")
    transport.write(b"more")
    assert real.writes == [b"HEADbody", b"more"]


def test_close_sends_a_held_head_first() -> None:
    """A response abandoned after its start still sends its head before the connection closes."""
    transport, real, _ = holding()
    transport.write(b"HEAD")
    transport.close()
    assert real.writes == [b"HEAD"]
    assert real.closed and transport.is_closing()


async def body_app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    request = await receive()
    body = b"echo:" + request["body"] if scope["method"] == "POST" else scope["path"].encode()
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def exchange(port: int, raw: bytes, until: bytes) -> bytes:
    """Send `raw` on a fresh connection; what comes back up to and including `until`."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    try:
        return await asyncio.wait_for(reader.readuntil(until), 5)
    finally:
        writer.close()


@asynccontextmanager
async def serving(
    app: Any, limits: ConnectionLimits | None = None, keep_alive: float = 5.0
) -> AsyncIterator[int]:
    """An in-process uvicorn server with this protocol (and `limits`); its port."""
    protocol = OneWriteHttpToolsProtocol.with_limits(limits or ConnectionLimits())
    # ws="none" as `carebench serve` has it: with a WebSocket library installed (locust brings
    # wsproto) uvicorn would otherwise take upgrade requests itself.
    config: Any = uvicorn.Config(
        app,
        http=protocol,
        ws="none",
        lifespan="off",
        log_level="warning",
        timeout_keep_alive=keep_alive,  # type: ignore[arg-type]  # int in its hints; any delay works
    )
    server = uvicorn.Server(config)
    # Listening before the server starts: connections wait in the backlog, no polling.
    sock = socket.create_server(("127.0.0.1", 0))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        await serving
        sock.close()


async def test_get_head_pipelined_and_100_continue_over_a_real_socket() -> None:
    """GET, HEAD (no body write), pipelined requests and Expect: 100-continue all complete."""
    async with serving(body_app) as port:
        pipelined = b"".join(
            f"{method} /{path} HTTP/1.1\r\nhost: x\r\n\r\n".encode()
            for method, path in [("GET", "a"), ("GET", "b"), ("HEAD", "c"), ("GET", "d")]
        )
        answer = await exchange(port, pipelined, b"/d")
        assert answer.count(b"HTTP/1.1 200 OK") == 4
        assert [part[-2:] for part in answer.split(b"HTTP/1.1 ")[1:]] == [
            b"/a",
            b"/b",
            b"\r\n",
            b"/d",
        ]
        continued = (
            b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\nexpect: 100-continue\r\n\r\nhi"
        )
        answer = await exchange(port, continued, b"echo:hi")
        assert answer.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK")
        assert answer.endswith(b"echo:hi")


def test_a_write_once_the_client_left_is_dropped_and_marks_the_cycle() -> None:
    """After the transport closed (client gone), writes are dropped, not raised, and
    reported (the protocol marks the request disconnected)."""
    transport, real, gone = holding()
    transport.write(b"HEAD")
    real.closed = True
    transport.write(b"body")
    transport.close()
    assert real.writes == []
    assert gone == ["gone"]


async def no_body_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers with its path, never reading the request body (as carebench's app)."""
    if scope["type"] != "http":
        return
    body = scope["path"].encode()
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def read_all(port: int, raw: bytes, half_close: bool = False) -> bytes:
    """Send `raw` on a fresh connection; everything the server sends until it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    if half_close:
        writer.write_eof()
    try:
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


def statuses(answer: bytes) -> list[int]:
    return [int(part[:3]) for part in answer.split(b"HTTP/1.1 ")[1:]]


TIGHT = ConnectionLimits(read_timeout=0.2, max_header_size=8192, max_headers=5, max_pipelined=3)


def get(path: str, *headers: str) -> bytes:
    return "".join(
        [f"GET {path} HTTP/1.1\r\nhost: x\r\n", *(h + "\r\n" for h in headers), "\r\n"]
    ).encode()


async def test_limits_refuse_with_4xx_and_close() -> None:
    """A URL or a head over the size limit, too many header fields, and a head or body not
    sent within the read timeout: 414, 431, 431, 408, and a close for an idle connection."""
    async with serving(no_body_app, TIGHT) as port:
        assert statuses(await read_all(port, get("/" + "u" * 9000))) == [414]
        assert statuses(await read_all(port, get("/", "x-big: " + "h" * 9000))) == [431]
        many = [f"x-h{i}: v" for i in range(6)]
        assert statuses(await read_all(port, get("/", *many))) == [431]
        assert statuses(await read_all(port, get("/")[:10])) == [408]
        assert await read_all(port, b"") == b""
        unsent = b"GET /a HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\nx"
        assert statuses(await read_all(port, unsent)) == [200]
        # The same on a kept-alive connection, after a first request was answered.
        assert statuses(await after_one_request(port, get("/b")[:10])) == [200, 408]
        assert statuses(await after_one_request(port, unsent)) == [200, 200]


async def after_one_request(port: int, raw: bytes) -> bytes:
    """GET /a, its answer, then `raw` on the same connection: everything until the close."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(get("/a"))
        first = await asyncio.wait_for(reader.readuntil(b"/a"), 5)
        writer.write(raw)
        return first + await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


async def test_an_upgrade_request_is_answered_as_plain_http() -> None:
    """No WebSocket here: `Upgrade: websocket` is ignored, the request answered normally."""
    async with serving(no_body_app, TIGHT) as port:
        upgrade = get(
            "/ws", "connection: upgrade", "upgrade: websocket", "sec-websocket-version: 13"
        )
        answer = await exchange(port, upgrade, b"/ws")
        assert statuses(answer) == [200]


async def test_a_head_over_the_limit_split_across_reads_is_refused() -> None:
    """The size limit holds when the head arrives in pieces, not only in one read."""
    async with serving(no_body_app, TIGHT) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nhost: x\r\nx-big: ")
        for _ in range(10):
            writer.write(b"h" * 1000)
            await writer.drain()
            await asyncio.sleep(0.001)
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        assert statuses(answer) == [431]


async def test_refusals_come_after_the_responses_owed_and_pipelines_are_capped() -> None:
    """A bad request after pipelined good ones is refused after their answers, in order;
    past max_pipelined outstanding, the last accepted answer closes the connection."""
    async with serving(no_body_app, TIGHT) as port:
        answer = await read_all(port, get("/a") + get("/b") + b"GARBAGE\r\n\r\n")
        assert statuses(answer) == [200, 200, 400]
        answer = await read_all(port, b"".join(get(f"/{i}") for i in range(10)))
        assert statuses(answer) == [200, 200, 200]
        assert answer.endswith(b"connection: close\r\n\r\n/2")


async def test_pipelined_requests_sent_before_a_half_close_are_answered() -> None:
    """Nothing more is read while pipelined requests wait, so a half-close after them is
    seen once they are all answered (uvicorn read on after each response and dropped them)."""

    async def slow_app(scope: Scope, receive: Receive, send: Send) -> None:
        await asyncio.sleep(0.01)
        await no_body_app(scope, receive, send)

    async with serving(slow_app) as port:
        answer = await read_all(port, get("/a") + get("/b") + get("/c"), half_close=True)
        assert statuses(answer) == [200, 200, 200]


async def test_a_client_that_resets_marks_the_request_in_flight_disconnected() -> None:
    """A reset while a pipelined request is being answered marks that request (not only the
    last one parsed) disconnected, so the app can count it cancelled and nothing is written.
    (Reading the body resumes reading the connection, so the reset is seen meanwhile.)"""
    seen: list[bool] = []

    async def slow_app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        await receive()
        await asyncio.sleep(0.05)
        seen.append(receive.__self__.disconnected)  # type: ignore[attr-defined]
        await no_body_app(scope, receive, send)

    async with serving(slow_app) as port:
        client = socket.create_connection(("127.0.0.1", port))
        client.sendall(get("/a") + get("/b"))
        await asyncio.sleep(0.01)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.01)
    assert seen == [True]


class FlowStub:
    write_paused = False


def make_cycle(
    cycle_class: type[RequestResponseCycle],
    transport: Any,
    method: str = "GET",
    keep_alive: bool = True,
    on_response: Any = lambda: None,
) -> Any:
    """A response cycle as uvicorn makes one, writing to `transport`."""
    defaults = [(b"date", b"Sat, 28 Nov 2026 12:00:00 GMT"), (b"server", b"uvicorn")]
    cycle = RequestResponseCycle(
        {"method": method},  # type: ignore[typeddict-item]
        transport,
        FlowStub(),  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        False,
        defaults,
        asyncio.Event(),
        False,
        keep_alive,
        on_response,
    )
    cycle.__class__ = cycle_class
    return cycle


def response_head(cycle_class: type[RequestResponseCycle], headers: list[Any]) -> bytes:
    """What a cycle of `cycle_class` writes for a 200 with `headers` (and a 2-byte body)."""
    transport = RecordingTransport()
    cycle = make_cycle(cycle_class, transport)

    async def respond() -> None:
        await cycle.send({"type": "http.response.start", "status": 200, "headers": headers})
        await cycle.send({"type": "http.response.body", "body": b"hi"})

    asyncio.run(respond())
    assert cycle.response_complete
    return b"".join(transport.writes)


@pytest.mark.parametrize(
    "headers",
    [
        [(b"content-type", b"application/json"), (b"content-length", b"2")],
        [(b"content-length", b"2"), (b"x-request-id", b"r1"), (b"retry-after", b"3")],
        [(b"x-custom", b"1"), (b"content-length", b"2")],  # not carebench's: uvicorn's path
        [(b"Content-Type", b"text/plain"), (b"content-length", b"2")],  # not lower case
        [(b"content-type", b"text/plain")],  # no length: uvicorn chunks it
        [(b"content-length", b"2"), (b"connection", b"close")],
    ],
)
def test_the_short_path_writes_what_uvicorn_writes(headers: list[Any]) -> None:
    """OneWriteCycle's head is byte for byte uvicorn's, on its short path or off it."""
    assert response_head(OneWriteCycle, headers) == response_head(RequestResponseCycle, headers)


@pytest.mark.parametrize("value", [b"a\r\nset-cookie: x=1", b"a\nb", b"a\x00b"])
def test_a_header_value_that_could_inject_is_refused_as_uvicorn_refuses_it(value: bytes) -> None:
    """A value with CR, LF or NUL leaves the short path, and uvicorn refuses it."""
    headers = [(b"x-request-id", value), (b"content-length", b"2")]
    with pytest.raises(RuntimeError, match="Invalid HTTP header value"):
        response_head(OneWriteCycle, headers)


async def test_keep_alive_closes_an_idle_connection_but_not_a_busy_one() -> None:
    """A connection that keeps sending outlives the keep-alive timeout; once it idles for
    the timeout, the server closes it."""
    async with serving(no_body_app, keep_alive=0.3) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for index in range(8):  # 0.8 s in all, a request every 0.1 s
                writer.write(f"GET /r{index} HTTP/1.1\r\nhost: x\r\n\r\n".encode())
                await asyncio.wait_for(reader.readuntil(f"/r{index}".encode()), 5)
                await asyncio.sleep(0.1)
            started = asyncio.get_running_loop().time()
            assert await asyncio.wait_for(reader.read(), 5) == b""
            assert asyncio.get_running_loop().time() - started >= 0.1
        finally:
            writer.close()


def test_respond_writes_in_one_write_what_the_two_messages_write() -> None:
    """A whole response through `respond` is byte for byte uvicorn's for the same head,
    in one write, and completes the cycle as uvicorn's last body message does."""
    lines = b"content-type: application/json\r\ncontent-length: 2\r\nx-request-id: r1\r\n"
    headers = [(b"content-type", b"application/json"), (b"content-length", b"2")]
    headers.append((b"x-request-id", b"r1"))
    transport, real, _ = holding()
    completed: list[str] = []
    cycle = make_cycle(OneWriteCycle, transport, on_response=lambda: completed.append("done"))
    assert cycle.respond(200, lines, b"hi")
    assert real.writes == [response_head(RequestResponseCycle, headers)]
    assert cycle.response_complete and cycle.message_event.is_set()
    assert completed == ["done"]


@pytest.mark.parametrize(
    "state", ["head request", "closing connection", "client gone", "already started"]
)
def test_respond_declines_what_only_uvicorn_s_send_handles(state: str) -> None:
    """HEAD, a connection to close, a departed client or a started response: `respond`
    writes nothing and says so, and send_body falls back to the ASGI messages."""
    transport, real, _ = holding()
    cycle = make_cycle(
        OneWriteCycle,
        transport,
        method="HEAD" if state == "head request" else "GET",
        keep_alive=state != "closing connection",
    )
    cycle.disconnected = state == "client gone"
    cycle.response_started = state == "already started"
    assert not cycle.respond(200, b"content-length: 2\r\n", b"hi")
    assert real.writes == [] and not cycle.response_complete


def test_respond_after_the_client_left_drops_the_response_and_reports_it() -> None:
    """A whole response for a connection already closing is not written (uvloop would
    raise) and is reported as the client gone."""
    transport, real, gone = holding()
    real.closed = True
    cycle = make_cycle(OneWriteCycle, transport)
    assert cycle.respond(200, b"content-length: 2\r\n", b"hi")
    assert real.writes == [] and gone == ["gone"]


async def test_send_body_takes_respond_when_the_cycle_offers_it() -> None:
    """send_body hands carebench's responses to `respond` (one call, no messages) and
    falls back to the messages for extra headers or a cycle without it."""
    transport, real, _ = holding()
    cycle = make_cycle(OneWriteCycle, transport)
    await send_body(cycle.send, 200, b"{}", "r1")
    assert real.writes == [
        b"HTTP/1.1 200 OK\r\ndate: Sat, 28 Nov 2026 12:00:00 GMT\r\nserver: uvicorn\r\n"
        b"content-type: application/json\r\ncontent-length: 2\r\nx-request-id: r1\r\n\r\n{}"
    ]
    messages: list[MutableMapping[str, Any]] = []

    async def plain_send(message: MutableMapping[str, Any]) -> None:
        messages.append(message)

    await send_body(plain_send, 503, b"{}", "r2", extra_headers=[(b"retry-after", b"1")])
    assert [m["type"] for m in messages] == ["http.response.start", "http.response.body"]
    assert (b"retry-after", b"1") in messages[0]["headers"]
