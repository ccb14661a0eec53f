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
import re
import socket
import ssl
from collections.abc import Callable, Container, Mapping
from functools import lru_cache
from typing import NamedTuple, cast
from urllib.parse import urlsplit

from carebench.loadgen import protocol as _python_protocol
from carebench.loadgen.compiled import compiled_or_python
from carebench.loadgen.responses import ConnectionClosed, Response, ResponseCallback

__all__ = [
    "ConnectionClosed",
    "HttpConnection",
    "Response",
    "ResponseCallback",
    "UrlParts",
    "parse_url",
]

# Load tests usually cycle through a bounded set of targets; the bound only stops a run with
# unique query strings from growing memory without limit.
_CACHED_REQUESTS = 4096

_DEFAULT_PORTS = {"http": 80, "https": 443}
_TARGET = re.compile(r"/[\x21-\x7e]*")
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEADER_VALUE = re.compile(r"[^\x00\r\n]*")


#: The connection protocol: Cython's build of carebench.loadgen.protocol when there is a fresh
#: one, the module itself otherwise (see carebench.loadgen.compiled).
_ResponseProtocol: type[_python_protocol.ResponseProtocol] = compiled_or_python(
    _python_protocol
).ResponseProtocol


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

    def __init__(self, protocol: _python_protocol.ResponseProtocol, host_header: str) -> None:
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
            # Duck-typed: the protocol does not subclass asyncio.Protocol (see protocol.py).
            lambda: cast(asyncio.Protocol, _ResponseProtocol(loop, keep_body, headers_for)),
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
        return cls(cast(_python_protocol.ResponseProtocol, protocol), _host_header(host, port))

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
