"""A load generator's view of an HTTP response, and the errors and callbacks that settle one."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from httptools import HttpParserError, HttpResponseParser

__all__ = ["ConnectionClosed", "Response", "ResponseCallback", "bare_response", "parse_headers"]


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
        headers = parse_headers(self._raw)
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


def parse_headers(raw: bytes) -> dict[str, str]:
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


def bare_response(status: int) -> Response:
    return _BARE.get(status) or _BARE.setdefault(status, Response(status, b""))


class ConnectionClosed(ConnectionError):
    """The connection is closed, or ended before a complete response arrived."""


#: Settles one request sent with `send_then`: (response, None) or (None, error).
ResponseCallback = Callable[[Response | None, ConnectionClosed | None], None]
