"""HttpChannel over a real socket: statuses, Retry-After of refusals, the priority header."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from carebench.loadgen.channels import HttpChannel


def answer(status: int, headers: str = "") -> bytes:
    return f"HTTP/1.1 {status} X\r\nContent-Length: 2\r\n{headers}\r\nok".encode()


@asynccontextmanager
async def scripted_server(answers: list[bytes], requests: list[bytes]) -> AsyncIterator[int]:
    """A keep-alive server on port 0 that sends the next scripted answer to each request."""
    done = asyncio.Event()

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for reply in answers:
            requests.append(await reader.readuntil(b"\r\n\r\n"))
            writer.write(reply)
        await reader.read()
        writer.close()
        await writer.wait_closed()
        done.set()

    server = await asyncio.start_server(respond, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
        await done.wait()
    finally:
        server.close()
        await server.wait_closed()


async def test_retry_after_is_read_from_refusals_only() -> None:
    """503 and 429 set retry_after from their header; any other status resets it to 0, even
    when it carries a Retry-After."""
    answers = [
        answer(503, "Retry-After: 2\r\n"),
        answer(200, "Retry-After: 7\r\n"),
        answer(429, "Retry-After: 0.5\r\n"),
        answer(429),
    ]
    seen = []
    async with scripted_server(answers, []) as port:
        channel = HttpChannel("127.0.0.1", port)
        for _ in answers:
            status = await channel.fetch("P1")
            seen.append((status, channel.retry_after))
        channel.close()
    assert seen == [(503, 2.0), (200, 0.0), (429, 0.5), (429, 0.0)]


async def test_priority_goes_out_as_a_header_and_the_id_in_the_query() -> None:
    """fetch(id, priority) asks for /api/v1/patients?id=ID with X-Request-Priority."""
    requests: list[bytes] = []
    async with scripted_server([answer(200), answer(200)], requests) as port:
        channel = HttpChannel("127.0.0.1", port, "/base")
        assert await channel.fetch("P7", "critical") == 200
        assert await channel.fetch("P8") == 200
        channel.close()
    assert requests[0].startswith(b"GET /base/api/v1/patients?id=P7 HTTP/1.1\r\n")
    assert b"X-Request-Priority: critical\r\n" in requests[0]
    assert b"X-Request-Priority" not in requests[1]
    assert requests[1].startswith(b"GET /base/api/v1/patients?id=P8 HTTP/1.1\r\n")
