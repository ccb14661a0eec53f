"""The ASGI application: routing, validation, the pattern call and metrics at the boundary.

Framework-free on purpose: Starlette halves and FastAPI divides by 4-9 the throughput of a
raw ASGI app on this kind of machine, and the benchmark must measure patterns, not routing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Protocol, cast

from carebench import __version__
from carebench.audit.prometheus import AuditCollector
from carebench.audit.serve import AuditedServe
from carebench.audit.trail import AuditTrail
from carebench.auth.gate import OPEN_PATHS, AccessGate
from carebench.backends.base import Backend
from carebench.errors import ClientGone
from carebench.fhir import api as fhir_api
from carebench.fhir.api import FhirApi
from carebench.metrics.document import MetricsDocument
from carebench.metrics.process import process_stats
from carebench.metrics.prometheus import CONTENT_TYPE, CarebenchCollector, build_registry, render
from carebench.metrics.requests import RequestMetrics
from carebench.models import (
    DEFAULT_CLASS_TIMEOUTS,
    PRIORITY_RANK,
    Answer,
    Patient,
    Query,
    is_valid_patient_id,
)
from carebench.patterns.base import Pattern
from carebench.responses import ResponseEncoder, encode_error
from carebench.server import openapi
from carebench.server.failures import SHUTTING_DOWN, failure_for
from carebench.server.gc_tuning import settle_after_startup
from carebench.server.http import (
    Receive,
    Scope,
    Send,
    header_value,
    query_param,
    send_body,
    send_json,
)
from carebench.server.http import request_id_from as _request_id

Handler = Callable[[Scope, Receive, Send], Awaitable[None]]
PATIENTS_PATH = "/api/v1/patients"
FHIR_PREFIX = fhir_api.FHIR_BASE + "/"

#: Nginx's code for "client closed request": logged and counted, never sent.
CLIENT_CLOSED = 499


class CareBenchApp:
    """ASGI app serving the patient API through one pattern in front of one backend."""

    def __init__(
        self,
        pattern: Pattern,
        backend: Backend,
        request_timeout: float = 5.0,
        drain_timeout: float = 10.0,
        class_timeouts: dict[str, float] | None = None,
        enable_profiling: bool = False,
        gate: AccessGate | None = None,
        audit: AuditTrail | None = None,
    ) -> None:
        self.pattern = pattern
        #: Access control (carebench.auth); None serves everyone (--auth none).
        self._gate = gate
        self.backend = backend
        self.request_timeout = request_timeout
        self.drain_timeout = drain_timeout
        #: Deadline per priority class; standard is --request-timeout.
        self.deadlines = {**DEFAULT_CLASS_TIMEOUTS, **(class_timeouts or {})}
        self.deadlines["standard"] = request_timeout
        self.metrics = RequestMetrics(pattern.name)
        self._registry = build_registry(
            CarebenchCollector(self.metrics, pattern.stats, backend.stats, backend.health)
        )
        self._legacy = LegacyReply(pattern.encoder)
        #: Every patient lookup's path: _serve, or with --audit-log _serve with a record kept
        #: of each attempt (so that without it the app pays nothing for auditing).
        self.audit = audit
        self._lookup: Lookup = self._serve
        if audit is not None:
            self._lookup = AuditedServe(audit, self._serve, self.metrics.record)
            self._registry.register(AuditCollector(audit))
        self._fhir = FhirApi(self._lookup, self.metrics.record, time.strftime("%Y-%m-%d"))
        self._routes: dict[str, Handler] = {
            PATIENTS_PATH: self._patients,
            "/health": self._health,
            # The orchestrator's probes: the process runs; it should be sent traffic.
            openapi.LIVE_PATH: self._live,
            openapi.READY_PATH: self._ready,
            "/metrics": self._metrics,
            "/": self._index,
            openapi.OPENAPI_PATH: self._openapi,
        }
        # The FHIR routes as documented; the paths with an id reach it by their prefix.
        self._routes.update(dict.fromkeys(fhir_api.PATHS, self._fhir))
        if enable_profiling:
            from carebench.server.profiling import LiveProfiler

            self._profiler = LiveProfiler()
            self._routes[openapi.PROFILE_PATH] = self._profile
        #: Built from the routes: a route the document does not describe fails here.
        auth = gate.mode if gate is not None else "none"
        self._openapi_body = openapi.encoded(frozenset(self._routes), auth)
        if gate is not None:
            # Patient lookups are checked in _serve; the rest by the operational rule.
            for path in self._routes.keys() - {PATIENTS_PATH, *fhir_api.PATHS, *OPEN_PATHS}:
                self._routes[path] = _operational(self._routes[path], gate)
        self.started = False
        #: The serving loop, from startup(): asyncio.get_running_loop() makes a getpid()
        #: system call on CPython 3.11, once per request here.
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Called after shutdown (granian's worker prints its final stats this way).
        self.on_shutdown: Callable[[], None] | None = None
        #: Awaited at the end of startup() (`serve --processes` opens its peer socket so).
        self.on_startup: Callable[[], Awaitable[None]] | None = None
        #: When the drain must end (monotonic), from begin_drain(): shutdown() gets what is left.
        self._drain_deadline: float | None = None
        #: Set by cut_drain(): requests the server cancels from now on are answered 503.
        self.drain_cut = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    def _http(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # A plain function handing back the handler's coroutine: one frame less per request.
        handler = self._routes.get(scope["path"])
        if handler is None and scope["path"].startswith(FHIR_PREFIX):
            handler = self._fhir  # FHIR answers its own 404s and 405s, as OperationOutcomes
        if handler is None:
            return _error(send, 404, f"not found: {scope['path']}", _request_id(scope["headers"]))
        if scope["method"] != "GET" and handler is not self._fhir:
            return _error(
                send,
                405,
                f"method {scope['method']} not allowed; use GET",
                _request_id(scope["headers"]),
                [(b"allow", b"GET")],
            )
        return handler(scope, receive, send)

    def _patients(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # A plain function handing back the coroutine to await: no extra frame per request.
        started = time.perf_counter()
        request_id = _request_id(scope["headers"])
        patient_id = _query_param(scope, b"id")
        if not patient_id or not is_valid_patient_id(patient_id):
            message = (
                "missing required query parameter: id"
                if not patient_id
                else "invalid patient id: must match [A-Za-z0-9-.]{1,64}"
            )
            return self._invalid(send, message, request_id, started)
        query = Query(patient_id, 0.0, request_id)
        return self._lookup(scope, receive, send, query, self._legacy, started)

    async def _serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        query: Query,
        reply: Reply,
        started: float,
    ) -> None:
        """Run a valid lookup through the pattern and answer it with `reply`: the one path of
        every patient request (legacy and FHIR), from its priority to its metrics."""
        if self._gate is not None:
            # Before anything else: a refused request costs no queue slot and no query.
            denial = self._gate.check(scope["headers"], query)
            if denial is not None:
                await reply.error(
                    send, denial.status, denial.message, query.request_id, denial.headers
                )
                self.metrics.record("invalid", time.perf_counter() - started, denial.status)
                return
        # Absent is standard; present but empty is as invalid as any other unknown class.
        priority = header_value(scope["headers"], b"x-request-priority")
        if priority is None:
            priority = "standard"
        if priority not in PRIORITY_RANK:
            message = f"invalid X-Request-Priority {priority!r}: use critical, standard or batch"
            await reply.error(send, 400, message, query.request_id)
            self.metrics.record("invalid", time.perf_counter() - started, 400)
            return
        loop = self._loop or asyncio.get_running_loop()
        query.priority = priority
        query.deadline = loop.time() + self.deadlines[priority]
        # uvicorn's receive() belongs to a cycle object whose `disconnected` flag a worker can
        # read when it dequeues the request; other servers need a task awaiting receive()
        # (a task per request costs ~20 % of the app's throughput, measured).
        connection = getattr(receive, "__self__", None)
        if hasattr(connection, "disconnected"):
            query.connection = connection
            outcome, status = await self._answer(query, send, reply)
        else:
            watcher = loop.create_task(_watch_disconnect(receive, query))
            try:
                outcome, status = await self._answer(query, send, reply)
            finally:
                watcher.cancel()
        self.metrics.record(outcome, time.perf_counter() - started, status)

    async def _invalid(self, send: Send, message: str, request_id: str, started: float) -> None:
        await _error(send, 400, message, request_id)
        self.metrics.record("invalid", time.perf_counter() - started, 400)

    async def _answer(self, query: Query, send: Send, reply: Reply) -> tuple[str, int]:
        """Run the query through the pattern and send the response; (outcome, status).

        A client that left before its answer was written is sent nothing, whatever the
        pattern or backend made of its request (an error, a timeout, a refusal): it counts as
        cancelled (499), as nginx logs a client that closed its request."""
        try:
            answer = await self.pattern.submit(query)
        except ClientGone:
            return "cancelled", CLIENT_CLOSED
        except asyncio.CancelledError:
            if not self.drain_cut:
                raise
            failure = SHUTTING_DOWN
        except Exception as problem:
            failure = failure_for(problem, query, self.deadlines)
        else:
            await reply.answer(send, query, answer)
            if query.is_client_gone():
                # Gone before the answer could be written (the server dropped it): not a success.
                return "cancelled", CLIENT_CLOSED
            return "success", 200
        if query.is_client_gone():
            return "cancelled", CLIENT_CLOSED
        await reply.error(send, failure.status, failure.message, query.request_id, failure.headers)
        return failure.outcome, failure.status

    async def _health(self, scope: Scope, receive: Receive, send: Send) -> None:
        backend = self.backend.health()
        await send_json(
            send,
            200,
            {
                "status": "healthy" if backend.get("status") == "healthy" else "degraded",
                "pattern": self.pattern.name,
                "uptime_seconds": round(self.metrics.uptime(), 3),
                "version": __version__,
                "backend": backend,
            },
            _request_id(scope["headers"]),
        )

    async def _live(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Answering at all is the proof: a wedged loop answers nothing and gets restarted.
        body = {"status": "live", "uptime_seconds": round(self.metrics.uptime(), 3)}
        await send_json(send, 200, body, _request_id(scope["headers"]))

    async def _ready(self, scope: Scope, receive: Receive, send: Send) -> None:
        readiness = self.readiness()
        status = 200 if readiness["status"] == "ready" else 503
        await send_json(send, status, readiness, _request_id(scope["headers"]))

    def readiness(self) -> openapi.ReadinessDocument:
        """Ready unless starting, draining, the backend cannot be reached or the audit log
        cannot be written (every patient request would be refused).

        A degraded backend (slow, failing some queries, circuit open) keeps the server ready:
        the pattern sheds what it cannot serve, and taking every replica out of a Service for
        a slow database would turn a slow-down into an outage. One that cannot be reached at
        all (a --faults outage, a database down) makes it unready."""
        backend = self.backend.health()["status"]
        status: openapi.ReadinessStatus = "ready"
        if self._drain_deadline is not None:
            status = "draining"
        elif not self.started:
            status = "starting"
        elif backend == "down":
            status = "backend_down"
        elif self.audit is not None and self.audit.error is not None:
            status = "audit_failed"
        return {"status": status, "pattern": self.pattern.name, "backend": backend}

    async def _metrics(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = _request_id(scope["headers"])
        fmt = _query_param(scope, b"format")
        if fmt is None:
            fmt = "json"
        if fmt == "prometheus":
            await send_body(send, 200, render(self._registry), request_id, CONTENT_TYPE.encode())
        elif fmt == "json" and self.audit is not None:
            # With --audit-log, the trail's counters and state under "audit".
            document = {**self.metrics_snapshot(), "audit": self.audit.stats()}
            await send_json(send, 200, document, request_id)
        elif fmt == "json":
            await send_json(send, 200, self.metrics_snapshot(), request_id)
        else:
            await _error(send, 400, f"unknown format {fmt!r}: use json or prometheus", request_id)

    def metrics_snapshot(self) -> MetricsDocument:
        """The JSON /metrics document: reference fields plus pattern, backend, process state."""
        return {
            **self.metrics.snapshot(),
            "pattern_state": self.pattern.stats(),
            "backend": self.backend.stats(),
            "process": process_stats(),
        }

    def route(self, path: str, handler: Handler) -> None:
        """Answer `path` with `handler`, behind the same access rule as the route it replaces
        (`serve --processes` answers /metrics for every process this way)."""
        if self._gate is not None and path not in OPEN_PATHS:
            handler = _operational(handler, self._gate)
        self._routes[path] = handler

    async def _profile(self, scope: Scope, receive: Receive, send: Send) -> None:
        from carebench.server.profiling import ProfileRequestError

        request_id = _request_id(scope["headers"])
        client = scope.get("client") or (None, 0)
        fmt = _query_param(scope, b"format")
        try:
            seconds = self._profiler.check(client[0], _query_param(scope, b"seconds"), fmt)
        except ProfileRequestError as bad:
            await _error(send, bad.status, str(bad), request_id)
            return
        body, content_type = await self._profiler.profile(seconds, fmt or "html")
        await send_body(send, 200, body, request_id, content_type)

    async def _index(self, scope: Scope, receive: Receive, send: Send) -> None:
        host, port = scope.get("server") or ("127.0.0.1", 8080)
        base = f"http://{host}:{port}"
        await send_json(
            send,
            200,
            {
                "name": "carebench",
                "version": __version__,
                "pattern": self.pattern.name,
                "endpoints": {
                    "GET /api/v1/patients?id=P12345": f"curl '{base}{PATIENTS_PATH}?id=P12345'",
                    "GET /health": f"curl {base}/health",
                    "GET /health/live": f"curl {base}{openapi.LIVE_PATH}",
                    "GET /health/ready": f"curl {base}{openapi.READY_PATH}",
                    "GET /metrics": f"curl {base}/metrics",
                    "GET /metrics?format=prometheus": f"curl '{base}/metrics?format=prometheus'",
                    "GET /openapi.json": f"curl {base}{openapi.OPENAPI_PATH}",
                    "GET /fhir/Patient/P12345": f"curl {base}/fhir/Patient/P12345",
                    "GET /fhir/Patient?_id=P12345,P00001": (
                        f"curl '{base}/fhir/Patient?_id=P12345,P00001'"
                    ),
                    "GET /fhir/Patient/P12345/$everything": (
                        f"curl '{base}/fhir/Patient/P12345/$everything'"
                    ),
                    "GET /fhir/metadata": f"curl {base}/fhir/metadata",
                },
            },
            _request_id(scope["headers"]),
        )

    async def _openapi(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_body(send, 200, self._openapi_body, _request_id(scope["headers"]))

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.startup()
                # Only under a real server (the lifespan protocol), not in in-process tests.
                settle_after_startup()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def startup(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self.audit is not None:
            self.audit.start()
        await self.backend.start()
        await self.pattern.start()
        self.started = True
        if self.on_startup is not None:
            await self.on_startup()

    def begin_drain(self) -> None:
        """The server stopped accepting: the drain timeout runs from now, for the server's
        wait for requests and shutdown() together."""
        if self._drain_deadline is None:
            self._drain_deadline = time.monotonic() + self.drain_timeout

    def drain_left(self) -> float:
        """Seconds of the drain timeout left (all of it before begin_drain())."""
        if self._drain_deadline is None:
            return self.drain_timeout
        return max(0.0, self._drain_deadline - time.monotonic())

    def cut_drain(self) -> None:
        """The drain is over: requests the server cancels now are answered 503, and
        shutdown() waits for nothing."""
        self.drain_cut = True
        self._drain_deadline = time.monotonic()

    async def shutdown(self) -> None:
        """Let admitted work finish (within what is left of the drain timeout), then stop the
        backend."""
        self.begin_drain()  # unready from here on, whichever server stopped (granian too)
        await self.pattern.shutdown(self.drain_left())
        if self.audit is not None:
            # Every admitted request has answered: its record is queued. Write them all.
            await asyncio.to_thread(self.audit.close)
        await self.backend.close()
        self.started = False
        if self.on_shutdown is not None:
            self.on_shutdown()


#: How the app runs a valid patient lookup: (scope, receive, send, query, reply, started).
Lookup = Callable[[Scope, Receive, Send, Query, "Reply", float], Awaitable[None]]


class Reply(Protocol):
    """How a patient lookup is answered: the legacy JSON shape, or FHIR (fhir.api.FhirReply)."""

    async def error(
        self,
        send: Send,
        status: int,
        message: str,
        request_id: str,
        extra_headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None: ...

    def answer(self, send: Send, query: Query, answer: Answer) -> Awaitable[None]:
        """Send the 200 (a plain function handing back the coroutine: one frame less)."""
        ...


class LegacyReply:
    """`/api/v1/patients`: the reference's `{success, patient, ...}` body and error shape."""

    def __init__(self, encoder: ResponseEncoder) -> None:
        self._encoder = encoder

    async def error(
        self,
        send: Send,
        status: int,
        message: str,
        request_id: str,
        extra_headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        await _error(send, status, message, request_id, extra_headers)

    def answer(self, send: Send, query: Query, answer: Answer) -> Awaitable[None]:
        # A READ query (the legacy endpoint's only lookup) is answered with its patient.
        body = self._encoder.encode_patient(cast(Patient, answer), query.request_id)
        return send_body(send, 200, body, query.request_id)


def _operational(handler: Handler, gate: AccessGate) -> Handler:
    """`handler` behind the operational endpoints' rule (carebench.auth.gate)."""

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        denial = gate.check_ops(scope.get("client"), scope["headers"])
        if denial is None:
            await handler(scope, receive, send)
        else:
            request_id = _request_id(scope["headers"])
            await _error(send, denial.status, denial.message, request_id, denial.headers)

    return guarded


async def _watch_disconnect(receive: Receive, query: Query) -> None:
    """Mark the query when the client goes away, so queued work for it can be skipped."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            query.client_gone = True
            return


def _query_param(scope: Scope, name: bytes) -> str | None:
    return query_param(scope.get("query_string", b""), name)


async def _error(
    send: Send,
    status: int,
    message: str,
    request_id: str,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    await send_body(
        send, status, encode_error(message, request_id), request_id, extra_headers=extra_headers
    )
