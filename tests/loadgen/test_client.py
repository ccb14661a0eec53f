"""Tests for the load generator's HTTP client against real servers on port 0."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import uvicorn
import uvloop

from carebench.loadgen.client import (
    ConnectionClosed,
    HttpConnection,
    Response,
    _ResponseProtocol,
    parse_url,
)
from carebench.loadgen.protocol import ResponseProtocol

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
StreamHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class RecordingApp:
    """Raw ASGI app with a few fixed routes; records the client port of every request."""

    def __init__(self) -> None:
        self.client_ports: list[int] = []

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        self.client_ports.append(scope["client"][1])
        route = _ROUTES.get(scope["path"], _not_found)
        await route(scope, send)


async def _hello(scope: Message, send: Send) -> None:
    body = f"hello {scope['query_string'].decode()}".encode()
    await _respond(send, 200, body, [(b"content-type", b"text/plain"), (b"x-served-by", b"test")])


async def _echo_header(scope: Message, send: Send) -> None:
    headers = dict(scope["headers"])
    await _respond(send, 200, headers.get(b"x-request-id", b"missing"), [])


async def _chunked(scope: Message, send: Send) -> None:
    # No content-length and several body messages make uvicorn use chunked encoding.
    await send({"type": "http.response.start", "status": 200, "headers": []})
    for part in (b"alpha-", b"beta-", b"gamma"):
        await send({"type": "http.response.body", "body": part, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _close(scope: Message, send: Send) -> None:
    await _respond(send, 200, b"bye", [(b"connection", b"close")])


async def _not_found(scope: Message, send: Send) -> None:
    await _respond(send, 404, b"not found", [])


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    length = (b"content-length", str(len(body)).encode())
    await send({"type": "http.response.start", "status": status, "headers": [length, *headers]})
    await send({"type": "http.response.body", "body": body})


_ROUTES = {"/hello": _hello, "/echo": _echo_header, "/chunked": _chunked, "/close": _close}


@asynccontextmanager
async def serve(app: RecordingApp) -> AsyncIterator[int]:
    """Run uvicorn with httptools on 127.0.0.1:0 in this loop; yield its port once it listens."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        http="httptools",
        lifespan="off",
        log_config=None,
        log_level="warning",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.005)
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        await task


@asynccontextmanager
async def raw_server(handler: StreamHandler) -> AsyncIterator[int]:
    """Serve ``handler`` with asyncio streams on 127.0.0.1:0, for peers that misbehave."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handler(reader, writer)
        finally:
            writer.close()
            await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


def reply_with(raw: bytes) -> StreamHandler:
    """A raw handler that reads one request head, writes ``raw`` and closes."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(raw)
        await writer.drain()

    return handler


@pytest.fixture
def app() -> RecordingApp:
    return RecordingApp()


@pytest.fixture
async def port(app: RecordingApp) -> AsyncIterator[int]:
    async with serve(app) as bound:
        yield bound


@pytest.fixture
async def conn(port: int) -> AsyncIterator[HttpConnection]:
    connection = await HttpConnection.open("127.0.0.1", port)
    yield connection
    connection.close()


async def test_get_returns_status_body_and_lowercased_headers(conn: HttpConnection) -> None:
    """A 200 response carries its status, exact body and lower-cased header names."""
    response = await conn.get("/hello?id=P1")
    assert response.status == 200
    assert response.body == b"hello id=P1"
    assert response.headers["content-type"] == "text/plain"
    assert response.headers["x-served-by"] == "test"
    assert response.headers["content-length"] == str(len(b"hello id=P1"))


async def test_sequential_requests_reuse_one_connection(
    conn: HttpConnection, app: RecordingApp
) -> None:
    """Many sequential requests travel over a single keep-alive TCP connection."""
    bodies = [(await conn.get(f"/hello?n={n}")).body for n in range(50)]
    assert bodies == [f"hello n={n}".encode() for n in range(50)]
    assert len(app.client_ports) == 50
    assert len(set(app.client_ports)) == 1
    assert not conn.closed


async def test_a_status_only_connection_keeps_no_body_and_only_the_headers_asked_for(
    port: int,
) -> None:
    """keep_body=False drops bodies (chunked ones too) and headers_for keeps headers only for
    the statuses listed, while statuses, keep-alive and framing stay exact."""
    conn = await HttpConnection.open("127.0.0.1", port, keep_body=False, headers_for={404})
    try:
        found, chunked, missing = [await conn.get(t) for t in ("/hello", "/chunked", "/nope")]
    finally:
        conn.close()
    assert (found.status, found.body, found.headers) == (200, b"", {})
    assert (chunked.status, chunked.body) == (200, b"")
    assert (missing.status, missing.body) == (404, b"")
    assert missing.headers["content-length"] == str(len(b"not found"))


async def test_unknown_path_returns_404_and_connection_stays_usable(conn: HttpConnection) -> None:
    """A 404 is a normal response, not an error, and the connection stays open."""
    missing = await conn.get("/nope")
    found = await conn.get("/hello")
    assert (missing.status, missing.body) == (404, b"not found")
    assert found.status == 200
    assert not conn.closed


async def test_chunked_response_is_reassembled(conn: HttpConnection) -> None:
    """A chunked body comes back whole, without chunk framing, and the next request works."""
    response = await conn.get("/chunked")
    assert response.headers["transfer-encoding"] == "chunked"
    assert response.body == b"alpha-beta-gamma"
    assert (await conn.get("/hello")).status == 200


async def test_extra_headers_are_sent(conn: HttpConnection) -> None:
    """Headers passed to get() reach the server, and the cached plain request still works."""
    echoed = await conn.get("/echo", headers={"X-Request-Id": "r-42"})
    plain = await conn.get("/echo")
    assert echoed.body == b"r-42"
    assert plain.body == b"missing"


async def test_connection_close_header_marks_client_closed(conn: HttpConnection) -> None:
    """After a response with 'Connection: close' the client is closed and refuses new requests."""
    response = await conn.get("/close")
    assert (response.status, response.body) == (200, b"bye")
    assert conn.closed
    with pytest.raises(ConnectionClosed):
        await conn.get("/hello")


async def test_connecting_to_a_closed_port_raises_oserror() -> None:
    """Opening a connection to a port nobody listens on raises OSError."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    with pytest.raises(OSError):
        await HttpConnection.open("127.0.0.1", closed_port)


async def test_peer_closing_mid_request_raises_connection_closed() -> None:
    """A request in flight when the peer closes without answering raises ConnectionClosed."""
    async with raw_server(reply_with(b"")) as bound:
        conn = await HttpConnection.open("127.0.0.1", bound)
        with pytest.raises(ConnectionClosed):
            await conn.get("/")
        assert conn.closed


async def test_truncated_body_raises_connection_closed() -> None:
    """A body shorter than its Content-Length when the peer closes raises ConnectionClosed."""
    truncated = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"
    async with raw_server(reply_with(truncated)) as bound:
        conn = await HttpConnection.open("127.0.0.1", bound)
        with pytest.raises(ConnectionClosed):
            await conn.get("/")
        assert conn.closed


async def test_body_delimited_by_eof_is_returned() -> None:
    """A response with neither Content-Length nor chunking ends at EOF and is returned whole."""
    async with raw_server(reply_with(b"HTTP/1.1 200 OK\r\n\r\nuntil-eof")) as bound:
        conn = await HttpConnection.open("127.0.0.1", bound)
        response = await conn.get("/")
        assert (response.status, response.body) == (200, b"until-eof")
        assert conn.closed


async def test_malformed_response_raises_connection_closed() -> None:
    """Bytes that are not HTTP end the request with ConnectionClosed and close the client."""
    async with raw_server(reply_with(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")) as bound:
        conn = await HttpConnection.open("127.0.0.1", bound)
        with pytest.raises(ConnectionClosed, match="malformed"):
            await conn.get("/")
        assert conn.closed


async def test_cancelled_get_closes_the_connection() -> None:
    """Cancelling a request in flight closes the connection, since a late reply would desync it."""
    received = asyncio.Event()
    release = asyncio.Event()

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        received.set()
        await release.wait()

    async with raw_server(never_answer) as bound:
        conn = await HttpConnection.open("127.0.0.1", bound)
        request = asyncio.create_task(conn.get("/slow"))
        await received.wait()
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request
        assert conn.closed
        release.set()


async def test_one_request_at_a_time(conn: HttpConnection) -> None:
    """A second concurrent get() on the same connection is refused, not pipelined."""
    first = asyncio.create_task(conn.get("/hello"))
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="in flight"):
        await conn.get("/hello")
    assert (await first).status == 200


@pytest.mark.parametrize(
    ("target", "headers"),
    [
        ("no-slash", None),
        ("/has space", None),
        ("/caf\u00e9", None),
        ("/ok", {"X-Bad": "a\r\nInjected: 1"}),
        ("/ok", {"Bad Name": "v"}),
    ],
)
async def test_invalid_target_or_header_raises_value_error(
    conn: HttpConnection, target: str, headers: dict[str, str] | None
) -> None:
    """Targets and headers that would corrupt the request line are rejected before sending."""
    with pytest.raises(ValueError, match="invalid"):
        await conn.get(target, headers)
    assert (await conn.get("/hello")).status == 200


def test_client_works_on_uvloop() -> None:
    """The client runs on uvloop, the loop the load generator uses, with keep-alive and chunks."""

    async def scenario() -> tuple[list[Response], list[int]]:
        app = RecordingApp()
        async with serve(app) as bound:
            conn = await HttpConnection.open("127.0.0.1", bound)
            responses = [await conn.get(target) for target in ("/hello", "/chunked", "/close")]
            assert conn.closed
        return responses, app.client_ports

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        responses, client_ports = runner.run(scenario())
    assert [r.body for r in responses] == [b"hello ", b"alpha-beta-gamma", b"bye"]
    assert len(set(client_ports)) == 1


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:8080/base", ("127.0.0.1", 8080, "/base", False)),
        ("http://127.0.0.1:8080/base/", ("127.0.0.1", 8080, "/base", False)),
        ("http://localhost:8000", ("localhost", 8000, "", False)),
        ("http://localhost:8000/", ("localhost", 8000, "", False)),
        ("http://example.org/a/b", ("example.org", 80, "/a/b", False)),
        ("http://[::1]:9000/x", ("::1", 9000, "/x", False)),
        ("https://example.org/a", ("example.org", 443, "/a", True)),
        ("https://127.0.0.1:8443", ("127.0.0.1", 8443, "", True)),
    ],
)
def test_parse_url_splits_host_port_and_base_path(
    url: str, expected: tuple[str, int, str, bool]
) -> None:
    """parse_url returns host, port (default 80, or 443 for https), the base path without a
    trailing slash, and whether the URL is https."""
    assert parse_url(url) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.org", "only http:// and https://"),
        ("127.0.0.1:8080", "only http://"),
        ("http:///path", "no host"),
        ("http://host:99999", "invalid port"),
        ("http://host:8080/?q=1", "query"),
    ],
)
def test_parse_url_rejects_unusable_urls(url: str, message: str) -> None:
    """parse_url raises ValueError naming the problem for non-http or host-less URLs."""
    with pytest.raises(ValueError, match=message):
        parse_url(url)


def test_headers_are_parsed_lazily_and_the_last_repeat_wins() -> None:
    """A response built from its raw bytes parses the headers on first read: lower-cased
    names; a header sent twice keeps its last value."""
    raw = b"HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nSET-COOKIE: b=2\r\nContent-Length: 0\r\n\r\n"
    response = Response(200, b"", raw=raw)
    assert response.headers == {"set-cookie": "b=2", "content-length": "0"}
    assert response.headers is response.headers


def test_a_truncated_response_still_gives_the_headers_that_arrived() -> None:
    """Headers are parsed from whatever arrived, even when the rest never came."""
    response = Response(200, b"", raw=b"HTTP/1.1 200 OK\r\nRetry-After: 3\r\nX-Half")
    assert response.headers == {"retry-after": "3"}


def test_a_bare_response_has_no_headers_and_shares_no_state() -> None:
    """A response without raw bytes answers {} for its headers, a new dict each time."""
    response = Response(204, b"")
    response.headers["x"] = "y"
    assert response.headers == {}


class _NoTransport(asyncio.Transport):
    """A transport that keeps what is written and notes whether it was aborted."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.aborted = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def abort(self) -> None:
        self.aborted = True

    def close(self) -> None:
        self.aborted = True


@pytest.fixture
def event_loop_for_protocol() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def _status_only_protocol(
    loop: asyncio.AbstractEventLoop,
) -> tuple[ResponseProtocol, _NoTransport]:
    protocol = _ResponseProtocol(loop, keep_body=False, headers_for={503})
    transport = _NoTransport()
    protocol.connection_made(transport)
    return protocol, transport


OK_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
REFUSED_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 2\r\nContent-Length: 0\r\n\r\n"
)


def test_send_then_settles_each_response_once_with_only_the_headers_asked_for(
    event_loop_for_protocol: asyncio.AbstractEventLoop,
) -> None:
    """send_then's callback gets each response once, in whatever pieces it arrives: a status
    whose headers are not asked for settles as the shared bare response (on its first and
    later arrivals), a refusal with its Retry-After."""
    protocol, transport = _status_only_protocol(event_loop_for_protocol)
    settled: list[tuple[Response | None, ConnectionClosed | None]] = []
    for response in (OK_RESPONSE, OK_RESPONSE, REFUSED_RESPONSE):
        protocol.send_then(b"GET / HTTP/1.1\r\n\r\n", lambda r, e: settled.append((r, e)))
        for piece in (response[:9], response[9:30], response[30:]):
            protocol.data_received(piece)
    first, second, refused = (response for response, _ in settled)
    assert [error for _, error in settled] == [None, None, None]
    assert first is second and first is not None and first.status == 200
    assert first.headers == {}
    assert refused is not None and refused.headers["retry-after"] == "2"
    assert len(transport.written) == 3 and not protocol.closed


def test_an_error_in_the_settle_callback_is_raised_as_itself_not_as_a_malformed_response(
    event_loop_for_protocol: asyncio.AbstractEventLoop,
) -> None:
    """A callback that raises while the parser runs surfaces its own exception (a bug is not
    reported as the server's fault); the connection, whose parser cannot go on, is aborted
    and the callback is not called a second time."""
    protocol, transport = _status_only_protocol(event_loop_for_protocol)
    calls: list[Response | None] = []

    def failing(response: Response | None, error: ConnectionClosed | None) -> None:
        calls.append(response)
        raise LookupError("bug in the callback")

    protocol.send_then(b"GET / HTTP/1.1\r\n\r\n", failing)
    with pytest.raises(LookupError, match="bug in the callback"):
        protocol.data_received(OK_RESPONSE)
    assert len(calls) == 1
    assert protocol.closed and transport.aborted
