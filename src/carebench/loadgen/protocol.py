"""The connection protocol of the load generator's HTTP client: one request in flight, its
response parsed by httptools (llhttp) and settled through a future or a callback.

The request path of every load test runs through here, so this module is also compiled with
Cython when it can be (see carebench.loadgen.compiled): the same source, with the attribute
types declared in protocol.pxd. It must stay plain Python that Cython compiles unchanged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Container
from typing import cast

from httptools import HttpParserCallbackError, HttpParserError, HttpResponseParser

from carebench.loadgen.responses import (
    ConnectionClosed,
    Response,
    ResponseCallback,
    bare_response,
    parse_headers,
)

__all__ = ["ResponseProtocol"]


class ResponseProtocol:
    """Feeds received bytes to httptools and resolves one response future at a time.

    httptools looks up its callbacks once, when the parser is made, and calls them per header
    and body fragment, making bytes objects for each: there is no header callback at all (the
    bytes received are kept instead, and a response's headers are parsed from them only when
    read), and the body callback is a C method (a list's ``append``), left out when the body
    is not kept.
    """

    on_body: Callable[[bytes], None]

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        keep_body: bool = True,
        headers_for: Container[int] | None = None,
    ) -> None:
        self._loop = loop
        #: What arrived of the response in flight before the read being parsed ...
        self._received: list[bytes] = []
        #: ... and that read, while the parser has it (None otherwise). A response that
        #: completes within one read (nearly all) is never copied into `_received`: an
        #: append and a clear less per response (~0.04 us).
        self._reading: bytes | None = None
        self._body: list[bytes] = []
        self._headers_for = headers_for
        #: The shared bare response of each status seen whose headers are not wanted.
        self._bare: dict[int, Response] = {}
        if keep_body:
            self.on_body = self._body.append
        self._parser = HttpResponseParser(self)
        # The parser's methods called on every response, bound once: no lookup per call.
        self._keep_alive: Callable[[], bool] = self._parser.should_keep_alive
        self._status_code: Callable[[], int] = self._parser.get_status_code
        self._transport: asyncio.Transport | None = None
        #: The transport's write, bound once (None until connected).
        self._write: Callable[[bytes], object] | None = None
        self._waiter: asyncio.Future[Response] | None = None
        #: Instead of a waiter: called with the response (or the error) once it is settled.
        self._on_settled: ResponseCallback | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport to write requests on."""
        # A stream connection always gets a write-capable transport, but uvloop's does not
        # subclass asyncio.Transport, so an isinstance check would reject it.
        self._transport = cast(asyncio.Transport, transport)
        self._write = self._transport.write

    # asyncio.Protocol's defaults, written out: a Cython extension type cannot subclass a
    # Python class, and the event loops call these by name (duck typing).
    def eof_received(self) -> bool | None:
        """Let the transport close itself; connection_lost settles what is in flight."""
        return None

    def pause_writing(self) -> None:
        """One small request per connection at a time never fills the write buffer."""

    def resume_writing(self) -> None:
        """See pause_writing."""

    def send(self, request: bytes) -> asyncio.Future[Response]:
        """Write one encoded request and return the future its response will resolve."""
        if self.closed or self._transport is None:
            raise ConnectionClosed("connection is closed; open a new one")
        if self._waiter is not None:
            raise RuntimeError("a request is already in flight on this connection")
        waiter = self._loop.create_future()
        self._waiter = waiter
        self._transport.write(request)
        return waiter

    def send_then(self, request: bytes, on_settled: ResponseCallback) -> None:
        """Write one encoded request; `on_settled(response, None)` or `(None, error)` follows.

        No future and no task wake-up: the callback runs from the event loop's read callback
        (or from `close()`, synchronously). Raises ConnectionClosed when already closed.
        """
        write = self._write
        if self.closed or write is None:
            raise ConnectionClosed("connection is closed; open a new one")
        if self._waiter is not None or self._on_settled is not None:
            raise RuntimeError("a request is already in flight on this connection")
        self._on_settled = on_settled
        write(request)

    def close(self) -> None:
        """Close the transport and fail any request still waiting for its response."""
        self.closed = True
        if self._transport is not None:
            self._transport.close()
        self._fail(ConnectionClosed("connection was closed locally"))

    def data_received(self, data: bytes) -> None:
        """Parse response bytes; anything the parser rejects ends the connection.

        A complete response is settled from within the parser (`on_message_complete`). An
        exception raised there by a send_then callback is re-raised as itself, after the
        connection is aborted (the parser cannot go on): it is not a malformed response.
        """
        if self._on_settled is None and self._waiter is None:
            self._abort(ConnectionClosed("peer sent data with no request in flight"))
            return
        self._reading = data
        try:
            self._parser.feed_data(data)
        except HttpParserCallbackError as exc:
            self._abort(ConnectionClosed("a response callback failed"))
            raise exc.__context__ or exc from None
        except HttpParserError as exc:
            error = ConnectionClosed(f"malformed HTTP response: {exc}")
            error.__cause__ = exc
            self._abort(error)
            return
        if self._reading is not None:  # the response goes on in a later read
            self._received.append(data)
            self._reading = None

    def connection_lost(self, exc: Exception | None) -> None:
        """Mark the connection closed and settle a request that was still in flight."""
        self.closed = True
        if self._waiter is None and self._on_settled is None:
            return
        if self._body_ends_at_eof():
            self._complete()
            return
        error = ConnectionClosed("peer closed the connection before the response was complete")
        error.__cause__ = exc
        self._fail(error)

    def on_message_complete(self) -> None:
        """Resolve the waiting request; httptools calls this for both length and chunked bodies."""
        if not self._keep_alive():
            self.closed = True
            if self._transport is not None:
                self._transport.close()
        on_settled = self._on_settled
        if on_settled is not None and not self._body:
            # A load generator's response whose headers it does not read: only its status
            # is kept (`_complete`'s last branch, inline: two calls less on every response).
            bare = self._bare.get(self._status_code())
            if bare is not None:
                if self._received:
                    self._received.clear()
                self._reading = None
                self._on_settled = None
                on_settled(bare, None)
                return
        self._complete()

    def _body_ends_at_eof(self) -> bool:
        # httptools cannot be told about EOF, so a body delimited by the connection closing
        # (no Content-Length, not chunked) is completed here instead of by the parser, once
        # its headers have all arrived.
        received = b"".join(self._received)
        if b"\r\n\r\n" not in received:
            return False
        headers = parse_headers(received)
        return "content-length" not in headers and "chunked" not in headers.get(
            "transfer-encoding", ""
        )

    def _complete(self) -> None:
        waiter = self._waiter
        self._waiter = None
        status = self._status_code()
        wanted = self._headers_for
        received = self._received
        if self._reading is not None:
            received.append(self._reading)
            self._reading = None
        body = self._body
        if body or wanted is None or status in wanted:
            response = Response(status, b"".join(body), raw=b"".join(received))
            body.clear()
        else:
            response = self._bare[status] = bare_response(status)
        received.clear()
        if waiter is not None and not waiter.done():
            waiter.set_result(response)
        elif self._on_settled is not None:
            on_settled = self._on_settled
            self._on_settled = None
            on_settled(response, None)

    def _abort(self, error: ConnectionClosed) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.abort()
        self._fail(error)

    def _fail(self, error: ConnectionClosed) -> None:
        waiter = self._waiter
        self._waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
        on_settled = self._on_settled
        self._on_settled = None
        self._received.clear()
        self._reading = None
        self._body.clear()
        if on_settled is not None:
            on_settled(None, error)
