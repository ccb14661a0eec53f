"""The app's lookup path with a record kept of every attempt (`serve --audit-log`).

Wraps the function every patient lookup goes through (CareBenchApp._serve: legacy and FHIR
alike), so the app pays nothing when auditing is off. The record's status is the one the
client was sent (read from the response as it goes out); who asked comes from the access
gate (it puts the verified principal on the query).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from carebench.audit.record import PURPOSE_HEADER, AuditRecord, check_purpose
from carebench.audit.trail import AuditTrail
from carebench.models import Query
from carebench.server.http import Message, Receive, Scope, Send, header_value

#: No answer went out: the client left first (or the server dropped the connection).
NO_ANSWER = 499
REFUSAL = "audit log unavailable: the request is refused rather than served unaudited"
_RETRY = [(b"retry-after", b"1")]


class ErrorReply(Protocol):
    """What the wrapper needs of the app's Reply: a way to send an error."""

    async def error(
        self,
        send: Send,
        status: int,
        message: str,
        request_id: str,
        extra_headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None: ...


#: (scope, receive, send, query, reply, started): CareBenchApp._serve.
Serve = Callable[[Scope, Receive, Send, Query, Any, float], Awaitable[None]]
#: The app's metrics: (outcome, seconds, status).
Record = Callable[[str, float, int], None]


class StatusWatch:
    """`send`, remembering the status of the response that went out."""

    __slots__ = ("send", "status")

    def __init__(self, send: Send) -> None:
        self.send = send
        self.status = 0

    def __call__(self, message: Message) -> Awaitable[None]:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        return self.send(message)


class AuditedServe:
    """`serve` with an audit record per call; refuses (503) what the trail cannot record."""

    def __init__(
        self,
        trail: AuditTrail,
        serve: Serve,
        record: Record,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._trail = trail
        self._serve = serve
        self._record = record
        self._clock = clock

    async def __call__(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        query: Query,
        reply: ErrorReply,
        started: float,
    ) -> None:
        if not self._trail.reserve():
            await reply.error(send, 503, REFUSAL, query.request_id, _RETRY)
            self._record("rejected", time.perf_counter() - started, 503)
            return
        watch = StatusWatch(send)
        purpose = header_value(scope["headers"], PURPOSE_HEADER)
        status = 0
        try:
            problem = None if purpose is None else check_purpose(purpose)
            if problem is not None:
                purpose = None  # never keep what a client wrote that is not a known code
                await reply.error(watch, 400, problem, query.request_id)
                self._record("invalid", time.perf_counter() - started, 400)
            else:
                await self._serve(scope, receive, watch, query, reply, started)
        except Exception:
            status = 500  # a failure the app did not answer: the server's 500, or nothing
            raise
        finally:
            status = status or watch.status or NO_ANSWER
            if status == 200 and query.is_client_gone():
                status = NO_ANSWER  # as the app counts it: gone before the answer was written
            self._trail.commit(self._build(scope, query, status, purpose, started))

    def _build(
        self, scope: Scope, query: Query, status: int, purpose: str | None, started: float
    ) -> AuditRecord:
        principal = query.principal
        client = scope.get("client")
        return AuditRecord(
            time=self._clock(),
            request_id=query.request_id,
            subject=principal.subject if principal is not None else None,
            client_id=principal.client_id if principal is not None else None,
            client_address=client[0] if client else None,
            action=query.lookup,
            resource_ids=query.patient_ids or (query.patient_id,),
            status=status,
            purpose_of_use=purpose,
            latency=time.perf_counter() - started,
        )
