"""Keep-alive HTTP/1.1 client built for load generation.

aiohttp's client tops out near 13k requests/s per core on the benchmark machine and httpx near
2k, so with either one the load generator, not the server, would be the bottleneck. This client
talks to the socket through an asyncio ``Protocol``, sends pre-encoded request bytes, and leaves
response parsing to httptools (llhttp), so a request costs one write, one parser call and one
future.

One ``HttpConnection`` carries one request at a time; open several for concurrency.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import ssl
from collections.abc import Callable, Container, Mapping
from functools import lru_cache
from typing import NamedTuple, cast
from urllib.parse import urlsplit

from httptools import HttpParserCallbackError, HttpParserError, HttpResponseParser

__all__ = ["ConnectionClosed", "HttpConnection", "Response", "UrlParts", "parse_url"]

# Load tests usually cycle through a bounded set of targets; the bound only stops a run with
# unique query strings from growing memory without limit.
_CACHED_REQUESTS = 4096

_DEFAULT_PORTS = {"http": 80, "https": 443}
_TARGET = re.compile(r"/[\x21-\x7e]*")
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEADER_VALUE = re.compile(r"[^\x00\r\n]*")


class Response:
    """A complete HTTP response.

    ``headers`` maps lower-cased names to values; a header sent more than once keeps its last
    value (a load generator reads Retry-After, which comes once). They are parsed from the
    response's raw bytes on first access: a load generator reads the status of every response
    but a header of very few (a refusal's Retry-After), and having the parser hand over every
    header of every response cost ~0.4 us of a ~2.5 us request (measured with five headers).
    """

    __slots__ = ("_headers", "_raw", "body", "status")

    def __init__(
        self,
        status: int,
        body: bytes,
        headers: dict[str, str] | None = None,
        raw: bytes = b"",
    ) -> None:
        """`raw` is the response as received (status line, headers, body so far): the
        headers are parsed from it when first read, unless `headers` are given."""
        self.status = status
        self.body = body
        self._headers = headers
        self._raw = raw

    @property
    def headers(self) -> dict[str, str]:
        if self._headers is not None:
            return self._headers
        headers = _parse_headers(self._raw)
        if self._raw:  # a shared bare response (see _bare) keeps no state
            self._headers = headers
        return headers

    def __repr__(self) -> str:
        return f"Response(status={self.status}, body={self.body!r}, headers={self.headers})"


class _HeaderCollector:
    """Receives the headers of a second, header-only parse of a response's raw bytes."""

    __slots__ = ("headers",)

    def __init__(self) -> None:
        self.headers: dict[str, str] = {}

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")


def _parse_headers(raw: bytes) -> dict[str, str]:
    """The headers in `raw` (a response or its beginning); {} when there are none."""
    collector = _HeaderCollector()
    if raw:
        # Bytes past the headers (a body, or a truncated one) may not parse: the headers
        # before the error are what is asked for.
        with contextlib.suppress(HttpParserError):
            HttpResponseParser(collector).feed_data(raw)
    return collector.headers


#: Responses without headers or body, one per status, shared: a load generator that reads
#: only statuses gets these instead of a new object per response (~0.15 us).
_BARE: dict[int, Response] = {}


def _bare(status: int) -> Response:
    return _BARE.get(status) or _BARE.setdefault(status, Response(status, b""))


class ConnectionClosed(ConnectionError):
    """The connection is closed, or ended before a complete response arrived."""


#: Settles one request sent with `send_then`: (response, None) or (None, error).
ResponseCallback = Callable[[Response | None, ConnectionClosed | None], None]


class _ResponseProtocol(asyncio.Protocol):
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
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[Response] | None = None
        #: Instead of a waiter: called with the response (or the error) once it is settled.
        self._on_settled: ResponseCallback | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport to write requests on."""
        # A stream connection always gets a write-capable transport, but uvloop's does not
        # subclass asyncio.Transport, so an isinstance check would reject it.
        self._transport = cast(asyncio.Transport, transport)

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
        if self.closed or self._transport is None:
            raise ConnectionClosed("connection is closed; open a new one")
        if self._waiter is not None or self._on_settled is not None:
            raise RuntimeError("a request is already in flight on this connection")
        self._on_settled = on_settled
        self._transport.write(request)

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
        parser = self._parser
        if not parser.should_keep_alive():
            self.closed = True
            if self._transport is not None:
                self._transport.close()
        on_settled = self._on_settled
        if on_settled is not None and not self._body:
            # A load generator's response whose headers it does not read: only its status
            # is kept (`_complete`'s last branch, inline: two calls less on every response).
            bare = self._bare.get(parser.get_status_code())
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
        headers = _parse_headers(received)
        return "content-length" not in headers and "chunked" not in headers.get(
            "transfer-encoding", ""
        )

    def _complete(self) -> None:
        waiter = self._waiter
        self._waiter = None
        status = self._parser.get_status_code()
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
            response = self._bare[status] = _bare(status)
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


class HttpConnection:
    """One keep-alive HTTP/1.1 connection that carries one request at a time.

    Once ``closed`` is true (the server sent ``Connection: close``, the peer went away, a
    request was cancelled, or ``close()`` was called) the connection cannot be reused; open a
    new one.
    """

    __slots__ = ("_host", "_protocol", "send_then")

    #: Write an encoded request (from :meth:`encode_get`); ``on_settled(response, None)`` or
    #: ``(None, error)`` is called once it is settled, from the event loop (no future, no task
    #: wake-up). The protocol's own method, so a request costs one Python call less.
    send_then: Callable[[bytes, ResponseCallback], None]

    def __init__(self, protocol: _ResponseProtocol, host_header: str) -> None:
        """Wrap a connected protocol; use :meth:`open` rather than calling this directly."""
        self._protocol = protocol
        self._host = host_header
        self.send_then = protocol.send_then

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        *,
        keep_body: bool = True,
        headers_for: Container[int] | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> HttpConnection:
        """Connect to ``host:port``; raises ``OSError`` (e.g. ``ConnectionRefusedError``).

        A load generator that reads only statuses passes ``keep_body=False`` (responses come
        with an empty body) and ``headers_for`` the statuses whose headers it reads (the
        others come with none); both spare work on every response.

        With ``tls`` the connection is HTTPS: the handshake (and the check of the server's
        certificate against ``host``, as the context asks) happens here, and a failed one
        raises ``ssl.SSLError`` (an ``OSError``). The event loop's TLS layer sits between the
        socket and the protocol, so requests and responses take the same path either way.
        """
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_connection(
            lambda: _ResponseProtocol(loop, keep_body, headers_for),
            host,
            port,
            ssl=tls,
            server_hostname=host if tls is not None else None,
        )
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # asyncio and uvloop both set this today; a load generator must not depend on it,
            # since Nagle plus delayed ACKs adds ~40 ms to small keep-alive requests.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(protocol, _host_header(host, port))

    @property
    def closed(self) -> bool:
        """True once the connection can no longer carry requests."""
        return self._protocol.closed

    async def get(self, target: str, headers: Mapping[str, str] | None = None) -> Response:
        """Send ``GET target`` and return the complete response.

        ``target`` is the path and query, e.g. ``"/api/v1/patients?id=P1"``, already
        percent-encoded. Raises ``ConnectionClosed`` if the connection is closed or drops before
        the response is complete, and ``ValueError`` for an invalid target or header.

        Cancelling this call (for example with ``asyncio.timeout``) closes the connection: the
        late response would otherwise be read as the answer to the next request.
        """
        waiter = self._protocol.send(self.encode_get(target, headers))
        try:
            return await waiter
        except asyncio.CancelledError:
            self._protocol.close()
            raise

    def encode_get(self, target: str, headers: Mapping[str, str] | None = None) -> bytes:
        """The bytes of ``GET target`` on this connection, for :meth:`send`.

        Raises ``ValueError`` for an invalid target or header.
        """
        if headers:
            return _encode_get_with_headers(self._host, target, headers)
        return _encode_get(self._host, target)

    def send(self, request: bytes) -> asyncio.Future[Response]:
        """Write an encoded request (from :meth:`encode_get`); its response resolves the future.

        The lower-level half of :meth:`get`, for a caller that keeps encoded requests and
        awaits the future itself (one coroutine less per request). Unlike :meth:`get`,
        abandoning the future does not close the connection: call :meth:`close` then.
        """
        return self._protocol.send(request)

    def close(self) -> None:
        """Close the connection; a request still in flight fails with ``ConnectionClosed``."""
        self._protocol.close()


class UrlParts(NamedTuple):
    """A base URL split for connecting: `tls` is true for https."""

    host: str
    port: int
    base_path: str
    tls: bool


def parse_url(url: str) -> UrlParts:
    """Split ``http[s]://host[:port][/base]`` into ``(host, port, base_path, tls)``.

    The port defaults to 80 (443 for https) and ``base_path`` has no trailing slash (``""``
    for the root), so targets can be built as ``base_path + "/api/..."``. Raises
    ``ValueError`` for anything but an ``http`` or ``https`` URL with a host.
    """
    parts = urlsplit(url)
    if parts.scheme not in _DEFAULT_PORTS:
        raise ValueError(
            f"unsupported URL {url!r}: only http:// and https:// URLs are supported, e.g. "
            "http://127.0.0.1:8000"
        )
    if not parts.hostname:
        raise ValueError(f"URL {url!r} has no host; use e.g. http://127.0.0.1:8000")
    if parts.query or parts.fragment:
        raise ValueError(f"URL {url!r} must not have a query or fragment; pass a base URL")
    try:
        port = parts.port or _DEFAULT_PORTS[parts.scheme]
    except ValueError as exc:
        raise ValueError(f"URL {url!r} has an invalid port: {exc}") from None
    return UrlParts(parts.hostname, port, parts.path.rstrip("/"), parts.scheme == "https")


def _host_header(host: str, port: int) -> str:
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


@lru_cache(maxsize=_CACHED_REQUESTS)
def _encode_get(host_header: str, target: str) -> bytes:
    _check_target(target)
    head = f"GET {target} HTTP/1.1\r\nHost: {host_header}\r\nConnection: keep-alive\r\n\r\n"
    return head.encode("ascii")


def _encode_get_with_headers(host_header: str, target: str, headers: Mapping[str, str]) -> bytes:
    _check_target(target)
    lines = [f"GET {target} HTTP/1.1\r\n"]
    names = {name.lower() for name in headers}
    if "host" not in names:
        lines.append(f"Host: {host_header}\r\n")
    if "connection" not in names:
        lines.append("Connection: keep-alive\r\n")
    for name, value in headers.items():
        _check_header(name, value)
        lines.append(f"{name}: {value}\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("ascii")


def _check_target(target: str) -> None:
    if not _TARGET.fullmatch(target):
        raise ValueError(
            f"invalid request target {target!r}: it must start with '/' and be percent-encoded "
            "ASCII without spaces"
        )


def _check_header(name: str, value: str) -> None:
    if not _HEADER_NAME.fullmatch(name):
        raise ValueError(f"invalid header name {name!r}")
    if not (_HEADER_VALUE.fullmatch(value) and value.isascii()):
        raise ValueError(
            f"invalid value for header {name!r}: {value!r} (ASCII without CR, LF or NUL)"
        )
