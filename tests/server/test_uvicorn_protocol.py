"""One write per response: the head waits for the body, nothing is lost, reordered or held."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import uvicorn

from carebench.server.http import Receive, Scope, Send
from carebench.server.uvicorn_protocol import HeadHoldingTransport, OneWriteHttpToolsProtocol


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


def holding() -> tuple[HeadHoldingTransport, RecordingTransport]:
    real = RecordingTransport()
    return HeadHoldingTransport(real), real  # type: ignore[arg-type]


def test_head_and_first_body_chunk_go_out_in_one_write() -> None:
    """The head is held until the body and both leave in a single write; later ones pass."""
    transport, real = holding()
    transport.write(b"HEAD")
    assert real.writes == []
    transport.write(b"body")
    transport.write(b"more")
    assert real.writes == [b"HEADbody", b"more"]


def test_close_sends_a_held_head_first() -> None:
    """A response abandoned after its start still sends its head before the connection closes."""
    transport, real = holding()
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


async def test_get_head_pipelined_and_100_continue_over_a_real_socket() -> None:
    """GET, HEAD (no body write), pipelined requests and Expect: 100-continue all complete."""
    config: Any = uvicorn.Config(
        body_app, http=OneWriteHttpToolsProtocol, lifespan="off", log_level="warning"
    )
    server = uvicorn.Server(config)
    # Listening before the server starts: connections wait in the backlog, no polling.
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
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
    finally:
        server.should_exit = True
        await serving
        sock.close()
