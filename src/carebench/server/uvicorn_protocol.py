"""uvicorn's httptools protocol, with one write per response and limits for hostile clients.

One write: uvicorn writes the status line and headers on `http.response.start` and the body
on `http.response.body`, and uvloop sends each write at once: two `write()` system calls per
response, which on one core cost about as much kernel time as the rest of the request path.
Holding the head until the body arrives makes it one (`strace -c` counts 2.0 -> 1.0 writes
per response).

Hostile clients (docs/api.md, "Connection limits"; measured against uvicorn 0.54 over raw
sockets, issue 11), where uvicorn's httptools protocol sets no bound or fails:

- departed clients: what is still owed to a client that has half-closed or reset is dropped
  without a write, and the request counts as cancelled. uvicorn marks only the last request
  it parsed as disconnected, so a pipelined one, or one answered between uvloop closing the
  transport and `connection_lost`, wrote to the closed uvloop transport: "Exception in ASGI
  application", `RuntimeError: unable to perform operation on <TCPTransport closed=True ...>`.
- request head size (`--max-header-size`): 414 for a longer URL, 431 for a larger head
  (uvicorn accepted a 64 MiB header);
- header fields: at most MAX_HEADERS (431);
- read timeout (`--read-timeout`): a request, once begun, must arrive within it, and the
  first one within it of connecting: 408 for a partial head, else a close (a client
  trickling head bytes, or never sending, held its connection forever);
- pipelining: at most MAX_PIPELINED requests outstanding per connection, and nothing more is
  read until they are answered (uvicorn read on after every response: 4 MiB of pipelined
  GETs took the server to 438 MiB RSS).

Refusals come after the responses the connection is still owed, in order.

Two more costs of uvicorn's per request are cut (measured in-process, no sockets; see
`OneWriteCycle` and `on_response_complete`): the response head is built without a regular
expression per header, and the keep-alive timer is armed once per idle period instead of
being cancelled and re-armed around every request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, cast

import httptools
from uvicorn.protocols.http.httptools_impl import (
    HEADER_VALUE_RE,
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)

from carebench.responses import encode_error
from carebench.server.http import new_request_id

#: Header fields per request (gunicorn's and Apache's default limit).
MAX_HEADERS = 100
#: Requests one connection may have outstanding (answered in order, one at a time). Clients
#: that pipeline keep a few in flight; past this, the last accepted one is answered with
#: `connection: close` and the client resends the rest on a new connection (RFC 9112 9.3.2).
MAX_PIPELINED = 64


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """What one client connection may cost the server (seconds and bytes)."""

    read_timeout: float = 10.0
    max_header_size: int = 16384
    max_headers: int = MAX_HEADERS
    max_pipelined: int = MAX_PIPELINED


class Refusal(Exception):
    """Raised from a parser callback to stop reading the connection: after the responses it
    still owes, the server answers `status` (none when 0) and closes."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class HeadHoldingTransport:
    """A response cycle's view of the connection: its first write (the head) is held and
    sent together with the next one (the first body chunk); later writes go straight through.

    Holding is only for cycles whose first write is the head and which always write a body
    after it: not HEAD requests (no body write) and not `Expect: 100-continue` (the interim
    response is written first). `close()` sends a held head first, so a response the app
    abandons after its start reaches the client as it would without holding.

    A write once the transport is closing is dropped and reported to `on_gone`: the client
    has gone (uvloop raises on a write to a closed transport). A callback, not the cycle: a
    cycle -> transport -> cycle reference loop would leave every request's objects to the
    garbage collector (measured: +1 us per request).
    """

    __slots__ = ("_head", "_on_gone", "_passthrough", "_transport")

    def __init__(
        self, transport: asyncio.Transport, on_gone: Callable[[], None], hold: bool = True
    ) -> None:
        self._transport = transport
        self._on_gone = on_gone
        self._head: bytes | None = None
        self._passthrough = not hold

    def write(self, data: bytes) -> None:
        if self._head is None and not self._passthrough:
            self._head = data
            return
        if self._head is not None:
            self._passthrough = True
            data, self._head = self._head + data, None
        if self._transport.is_closing():
            self._on_gone()
        else:
            self._transport.write(data)

    def write_response(self, data: bytes) -> None:
        """A whole response (head and body) written at once: nothing to hold."""
        self._passthrough = True
        if self._transport.is_closing():
            self._on_gone()
        else:
            self._transport.write(data)

    def close(self) -> None:
        if self._head is not None:
            head, self._head = self._head, None
            if not self._transport.is_closing():
                self._transport.write(head)
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()


#: Header names carebench's app sends that need no special handling by the server (not
#: content-length, transfer-encoding or connection): heads made of these (and a
#: content-length) take OneWriteCycle's short path.
PLAIN_HEADERS = frozenset(
    {
        b"content-type",
        b"x-request-id",
        b"retry-after",
        b"www-authenticate",
        b"allow",
        b"cache-control",
        b"x-content-type-options",
        b"location",
    }
)


class OneWriteCycle(RequestResponseCycle):
    """uvicorn's response cycle with a short path for the heads carebench's app sends.

    uvicorn checks every response header with two regular expressions, lower-cases it and
    compares it with three special names, every request (~1.5 us of the ~18 us a request
    costs in-process). A head whose names are all carebench's own (PLAIN_HEADERS, lower
    case), with a content-length, on a keep-alive connection, for a request other than HEAD,
    is written here with the same result, the values checked with uvicorn's expression once
    for all of them; a value it rejects, or any other head, goes through uvicorn's own
    `send`, which refuses or handles it.
    """

    async def send(self, message: Any) -> None:
        if (
            message["type"] == "http.response.start"
            and not self.response_started
            and not self.disconnected
            and self.keep_alive
            and not self.access_log
            and not self.flow.write_paused
            and self.scope["method"] != "HEAD"
        ):
            head = _plain_head(message["status"], message.get("headers", ()), self)
            if head is not None:
                self.response_started = True
                self.waiting_for_100_continue = False
                self.transport.write(head)
                return
        await RequestResponseCycle.send(self, message)

    def respond(self, status: int, lines: bytes, body: bytes) -> bool:
        """Write a whole response, head and body, without ASGI messages; False (nothing
        done: send the messages) when this cycle is not on the short path.

        For carebench's app (server/http.py, `send_body`): `lines` are its header lines,
        each `name: value\\r\\n`, valid by construction (its own names, constant or checked
        values) and with the body's content-length. Building them with one `%` format and
        skipping two messages and two `send` calls costs ~1 us less a request than `send`.
        """
        if (
            self.response_started
            or self.disconnected
            or not self.keep_alive
            or self.access_log
            or self.flow.write_paused
            or self.scope["method"] == "HEAD"
        ):
            return False
        self.response_started = True
        self.waiting_for_100_continue = False
        self.chunked_encoding = False
        self.expected_content_length = 0
        head = STATUS_LINE[status] + _default_header_lines(self.default_headers) + lines
        cast(HeadHoldingTransport, self.transport).write_response(head + b"\r\n" + body)
        # What uvicorn's `send` does once the last body chunk is written.
        self.response_complete = True
        self.message_event.set()
        self.on_response()
        return True


def _plain_head(status: int, headers: Any, cycle: OneWriteCycle) -> bytes | None:
    """The response head for `headers` when they qualify for the short path (then `cycle`
    expects that content-length), else None."""
    length = -1
    lines = [STATUS_LINE[status], _default_header_lines(cycle.default_headers)]
    values = []
    for name, value in headers:
        if name == b"content-length":
            if not value.isdigit():
                return None
            length = int(value)
        elif name not in PLAIN_HEADERS:
            return None
        values.append(value)
        lines += (name, b": ", value, b"\r\n")
    # A tab is allowed in a value, so the values joined by tabs pass if and only if each does.
    if length < 0 or HEADER_VALUE_RE.search(b"\t".join(values)):
        return None
    cycle.chunked_encoding = False
    cycle.expected_content_length = length
    lines.append(b"\r\n")
    return b"".join(lines)


#: The last default header list seen (uvicorn makes a new one, with a new date, every
#: second) and its lines, so they are joined once per second, not per response.
_defaults: list[Any] = [None, b""]


def _default_header_lines(headers: list[tuple[bytes, bytes]]) -> bytes:
    if _defaults[0] is not headers:
        _defaults[1] = b"".join(name + b": " + value + b"\r\n" for name, value in headers)
        _defaults[0] = headers
    lines: bytes = _defaults[1]
    return lines


class OneWriteHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol whose response cycles write head and body together, within limits."""

    limits: ClassVar[ConnectionLimits] = ConnectionLimits()

    @classmethod
    def with_limits(cls, limits: ConnectionLimits) -> type[OneWriteHttpToolsProtocol]:
        """This protocol class with other limits (uvicorn takes a class, not an instance)."""
        return cast(type[OneWriteHttpToolsProtocol], type(cls.__name__, (cls,), {"limits": limits}))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: The cycle whose task runs (pipelined ones run one after the other).
        self._running: RequestResponseCycle | None = None
        #: Bytes of the incomplete head in earlier reads (whole reads: an upper bound).
        self._head_bytes = 0
        self._read_bytes = 0
        self._read_timer: asyncio.TimerHandle | None = None
        #: Set once reading stopped for good: what to answer after the owed responses.
        self._refusal: Refusal | None = None
        #: Bound once, not per request.
        self._client_gone = self._client_left
        #: When the last response was sent (loop time); None while a request is in progress.
        self._idle_since: float | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_read_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._client_left()
        self._cancel_read_timer()
        if self.timeout_keep_alive_task is not None:
            self.timeout_keep_alive_task.cancel()
            self.timeout_keep_alive_task = None
        super().connection_lost(exc)
        self._forget_requests()

    def _forget_requests(self) -> None:
        """Drop this protocol's references that make cycles, once the connection is lost.

        `_client_gone` is this protocol's own bound method, and each request's transport
        (HeadHoldingTransport) holds it while this protocol holds the request's cycle: a
        cycle per connection (23 objects, with uvloop's transport and FlowControl), which
        only the server's rare cyclic collections freed (server/gc_tuning.py). Requests
        queued behind a pipeline are never started now, and hold this protocol through
        their `on_response`. A refusal raised in a parser callback keeps its traceback, whose
        frames hold this protocol. A request still running keeps what it needs: its cycle
        holds the transport, and through `on_response` and `_client_gone` this protocol.
        """
        del self._client_gone
        self._running = None
        self.cycle = None  # type: ignore[assignment]
        self.pipeline.clear()
        self._refusal = None

    def eof_received(self) -> None:
        # A half-close ends the connection, as it always did under uvicorn (uvloop closes the
        # transport when this returns None): the request in flight is a departed client's.
        self._client_left()

    def data_received(self, data: bytes) -> None:
        # uvicorn's, plus the limits; per read, not per parser callback, to stay cheap.
        if self._refusal is not None:
            return  # reading stopped: the connection ends after the responses it owes
        self._unset_keepalive_if_required()
        self._read_bytes = len(data)
        scope = self.scope
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # carebench serves no WebSocket: the request was answered as plain HTTP, which
            # RFC 9110 7.8 allows, without uvicorn's warning about a missing websocket library.
            if self._should_upgrade():
                self.handle_websocket_upgrade()
        except httptools.HttpParserError as error:
            self._refuse(self._refusal_for(error))
            return
        cycle = self.cycle
        if self.scope is not None and (cycle is None or cycle.scope is not self.scope):
            # A head is incomplete (see _head_incomplete). One begun in this read has an
            # unknown share of it: counted from the next read.
            self._head_bytes = self._head_bytes + len(data) if self.scope is scope else 0
            if self._head_bytes > self.limits.max_header_size:
                self._refuse(self._oversized())
                return
            if self._read_timer is None:
                self._arm_read_timer()
        elif cycle is not None and cycle.more_body:
            if self._read_timer is None:
                self._arm_read_timer()
        elif self._read_timer is not None:
            self._cancel_read_timer()

    def on_headers_complete(self) -> None:
        limits = self.limits
        if len(self.headers) > limits.max_headers:
            raise Refusal(431, f"more than {limits.max_headers} header fields")
        # Only a read that could take the head past the limit needs it measured.
        if self._head_bytes + self._read_bytes > limits.max_header_size:
            size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
            if size > limits.max_header_size:
                raise self._oversized()
        self._head_bytes = 0
        # The base class named, not super(): once per request, and super() costs about as
        # much as the checks above.
        HttpToolsProtocol.on_headers_complete(self)
        if self.pipeline and len(self.pipeline) + 1 >= limits.max_pipelined:
            self.cycle.keep_alive = False  # its response says `connection: close`
            raise Refusal(0, f"{limits.max_pipelined} pipelined requests")

    def on_response_complete(self) -> None:
        # uvicorn's, except that reading resumes only once the pipelined requests are all
        # answered, and a refusal waiting for them is sent.
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self._unset_keepalive_if_required()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        elif self._refusal is not None:
            self._send_refusal(self._refusal)
        else:
            self.flow.resume_reading()
            # uvicorn arms a timer here and cancels it when the next request arrives: ~0.7 us
            # a request. One timer per idle period instead: when it fires early (requests
            # came meanwhile) it is re-armed for the time left.
            self._idle_since = self.loop.time()
            if self.timeout_keep_alive_task is None:
                self.timeout_keep_alive_task = self.loop.call_later(
                    self.timeout_keep_alive, self._keep_alive_check
                )

    def _unset_keepalive_if_required(self) -> None:
        # Called by uvicorn's code when a request begins: the connection is busy, not idle.
        self._idle_since = None

    def _keep_alive_check(self) -> None:
        """Close the connection once it has been idle for the keep-alive timeout."""
        self.timeout_keep_alive_task = None
        idle_since = self._idle_since
        if idle_since is None:
            return  # busy: the response that ends it arms the timer again
        left = idle_since + self.timeout_keep_alive - self.loop.time()
        if left > 0:
            self.timeout_keep_alive_task = self.loop.call_later(left, self._keep_alive_check)
        else:
            self.timeout_keep_alive_handler()

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        hold = cycle.scope["method"] != "HEAD" and not cycle.waiting_for_100_continue
        cycle.transport = HeadHoldingTransport(cycle.transport, self._client_gone, hold)  # type: ignore[assignment]
        # Same attributes, a cheaper `send` (the class is swapped: uvicorn creates the cycle).
        cycle.__class__ = OneWriteCycle
        self._running = cycle
        HttpToolsProtocol._start_asgi_task(self, cycle, app)

    def _client_left(self) -> None:
        """Mark the requests still being answered as a departed client's."""
        for cycle in (self._running, self.cycle):
            if cycle is not None and not cycle.response_complete:
                cycle.disconnected = True
                cycle.message_event.set()

    def _head_incomplete(self) -> bool:
        # on_message_begin makes a new scope; on_headers_complete gives it to a new cycle.
        return self.scope is not None and (self.cycle is None or self.cycle.scope is not self.scope)

    def _owes_responses(self) -> bool:
        # The last parsed request is answered last: when it is done, all are.
        return self.cycle is not None and not self.cycle.response_complete

    def _refusal_for(self, error: httptools.HttpParserError) -> Refusal:
        cause = error.__context__
        if isinstance(cause, Refusal):
            return cause
        if not self._head_incomplete() and self.cycle is not None and self.cycle.more_body:
            # A bad body after a valid head: that request is answered; a 400 after its
            # response would read as the answer to the client's next request. Just close.
            return Refusal(0, f"invalid request body: {error}")
        return Refusal(400, f"invalid HTTP request: {error}")

    def _oversized(self) -> Refusal:
        limit = self.limits.max_header_size
        if len(self.url) > limit:
            return Refusal(414, f"URL longer than {limit} bytes")
        return Refusal(431, f"request head larger than {limit} bytes")

    def _refuse(self, refusal: Refusal) -> None:
        """Stop reading; answer `refusal` and close once the owed responses are sent."""
        self._refusal = refusal
        self._cancel_read_timer()
        self.flow.pause_reading()
        if refusal.status:
            # A client's mistake, not the server's: info, as nginx logs them, so hostile
            # clients cannot flood the log at the default level.
            self.logger.info("%s refused: %d %s", self.client, refusal.status, refusal.reason)
        if not self._owes_responses():
            self._send_refusal(refusal)

    def _send_refusal(self, refusal: Refusal) -> None:
        if refusal.status and not self.transport.is_closing():
            request_id = new_request_id()
            body = encode_error(refusal.reason, request_id)
            head = [STATUS_LINE[refusal.status]]
            head += [
                name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers
            ]
            head += [
                b"content-type: application/json\r\n",
                b"content-length: %d\r\n" % len(body),
                b"x-request-id: %s\r\n" % request_id.encode(),
                b"connection: close\r\n\r\n",
            ]
            self.transport.write(b"".join(head) + body)
        self.transport.close()

    def _arm_read_timer(self) -> None:
        self._read_timer = self.loop.call_later(self.limits.read_timeout, self._read_timed_out)

    def _cancel_read_timer(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _read_timed_out(self) -> None:
        self._read_timer = None
        if self.transport.is_closing():
            return
        if self._owes_responses():
            # The client waits for us (and nothing more is read meanwhile): not its delay.
            self._arm_read_timer()
        elif self._head_incomplete():
            self._refuse(Refusal(408, f"request not received within {self.limits.read_timeout:g}s"))
        else:
            # Nothing sent since connecting, or the body of an answered request: close.
            self._refuse(Refusal(0, "read timeout"))
