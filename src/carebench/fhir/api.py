"""The FHIR R4 routes under /fhir: paths and parameters become Queries for the app to run
through the pattern, and answers and errors become FHIR JSON.

The app keeps one code path for every patient lookup (priority, deadline, pattern, client-gone
handling, metrics); this module only says which lookup a request asks for and how to answer it.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import cast

from carebench.fhir import resources
from carebench.models import EVERYTHING, SEARCH, Answer, ClinicalRecord, Patient, Query
from carebench.models import is_valid_patient_id as is_valid_id
from carebench.server.http import Receive, Scope, Send, send_body
from carebench.server.http import request_id_from as _request_id

FHIR_BASE = "/fhir"
PATIENT_PATH = f"{FHIR_BASE}/Patient"
METADATA_PATH = f"{FHIR_BASE}/metadata"
EVERYTHING_SUFFIX = "/$everything"
#: The routes as the OpenAPI document names them.
PATHS = frozenset(
    {METADATA_PATH, PATIENT_PATH, f"{PATIENT_PATH}/{{id}}", f"{PATIENT_PATH}/{{id}}/$everything"}
)
_HOST = re.compile(r"[A-Za-z0-9.\-]{1,253}(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]{2,45}\](:[0-9]{1,5})?")
_ALLOW = [(b"allow", b"GET")]

#: What the app runs a lookup with: (scope, receive, send, query, reply, started).
Serve = Callable[[Scope, Receive, Send, Query, "FhirReply", float], Awaitable[None]]
#: Records one request in the app's metrics: (outcome, seconds, status).
Record = Callable[[str, float, int], None]


class FhirReply:
    """How one FHIR request is answered: its resource on success, an OperationOutcome on
    failure. `base` and `self_url` are for Bundles (full URLs and the self link)."""

    __slots__ = ("base", "self_url")

    def __init__(self, base: str = "", self_url: str = "") -> None:
        self.base = base
        self.self_url = self_url

    async def error(
        self,
        send: Send,
        status: int,
        message: str,
        request_id: str,
        extra_headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        body = resources.encode_outcome(status, message)
        await send_body(send, status, body, request_id, resources.CONTENT_TYPE, extra_headers)

    def answer(self, send: Send, query: Query, answer: Answer) -> Awaitable[None]:
        lookup = query.lookup
        if lookup == SEARCH:
            body = resources.encode_search(
                cast(tuple[Patient, ...], answer), self.base, self.self_url
            )
        elif lookup == EVERYTHING:
            body = resources.encode_everything(
                cast(ClinicalRecord, answer), self.base, self.self_url
            )
        else:
            body = resources.encode_patient(cast(Patient, answer))
        return send_body(send, 200, body, query.request_id, resources.CONTENT_TYPE)


#: Reads and errors need no URLs: one reply serves them all.
_PLAIN_REPLY = FhirReply()


class FhirApi:
    """The ASGI handler for every path under /fhir."""

    def __init__(self, serve: Serve, record: Record, started_on: str) -> None:
        """`started_on` (YYYY-MM-DD) dates the CapabilityStatement."""
        self._serve = serve
        self._record = record
        self._metadata = resources.encode_capability_statement(started_on)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = perf_counter()
        path: str = scope["path"]
        request_id = _request_id(scope["headers"])
        route, patient_id = _route(path)
        if not route:
            await _PLAIN_REPLY.error(send, 404, f"not found: {path[:200]}", request_id)
        elif scope["method"] != "GET":
            message = f"method {scope['method']} not allowed; use GET"
            await _PLAIN_REPLY.error(send, 405, message, request_id, _ALLOW)
        elif route == "metadata":
            await send_body(send, 200, self._metadata, request_id, resources.CONTENT_TYPE)
        elif route == "search":
            await self._search(scope, receive, send, request_id, started)
        else:
            await self._patient(scope, receive, send, request_id, started, patient_id, route)

    async def _patient(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        request_id: str,
        started: float,
        patient_id: str,
        route: str,
    ) -> None:
        if not is_valid_id(patient_id):
            message = f"invalid id {patient_id[:80]!r}: must match [A-Za-z0-9-.]{{1,64}}"
            await self._invalid(send, message, request_id, started)
        elif route == "everything":
            base = _base_url(scope)
            reply = FhirReply(base, f"{base}/Patient/{patient_id}/$everything")
            query = Query(patient_id, 0.0, request_id, lookup=EVERYTHING)
            await self._serve(scope, receive, send, query, reply, started)
        else:
            query = Query(patient_id, 0.0, request_id)
            await self._serve(scope, receive, send, query, _PLAIN_REPLY, started)

    async def _search(
        self, scope: Scope, receive: Receive, send: Send, request_id: str, started: float
    ) -> None:
        ids, problem = _search_ids(scope.get("query_string", b""))
        if problem:
            await self._invalid(send, problem, request_id, started)
            return
        base = _base_url(scope)
        reply = FhirReply(base, f"{base}/Patient?_id={','.join(ids)}")
        query = Query(ids[0], 0.0, request_id, lookup=SEARCH, patient_ids=ids)
        await self._serve(scope, receive, send, query, reply, started)

    async def _invalid(self, send: Send, message: str, request_id: str, started: float) -> None:
        await _PLAIN_REPLY.error(send, 400, message, request_id)
        self._record("invalid", perf_counter() - started, 400)


def _route(path: str) -> tuple[str, str]:
    """(route, patient id) for a path under /fhir; route "" when nothing is served there."""
    if path == METADATA_PATH:
        return "metadata", ""
    if path == PATIENT_PATH:
        return "search", ""
    if not path.startswith(PATIENT_PATH + "/"):
        return "", ""
    patient_id = path[len(PATIENT_PATH) + 1 :]
    route = "read"
    if patient_id.endswith(EVERYTHING_SUFFIX):
        patient_id = patient_id[: -len(EVERYTHING_SUFFIX)]
        route = "everything"
    # A further segment (another operation, a history) is not served; a bad id is a 400.
    return ("", "") if "/" in patient_id else (route, patient_id)


def _search_ids(raw: bytes) -> tuple[tuple[str, ...], str]:
    """The distinct ids of `_id=a,b,...` in their order, or a problem to answer 400 with."""
    ids: tuple[str, ...] = ()
    seen_id = False
    for pair in raw.split(b"&") if raw else ():
        key, _, value = pair.partition(b"=")
        name = key.decode("latin-1")
        if name != "_id":
            return (), f"unsupported search parameter {name[:40]!r}: search Patient by _id"
        if seen_id:
            return (), "give _id once, with the ids separated by commas"
        seen_id = True
        # Ids have no characters that need escaping but the comma, which may come as %2C.
        text = value.decode("latin-1").replace("%2C", ",").replace("%2c", ",")
        ids = tuple(dict.fromkeys(text.split(",")))
    if not ids:
        return (), "missing required search parameter: _id"
    if len(ids) > resources.MAX_SEARCH_IDS:
        return (), f"too many ids ({len(ids)}): at most {resources.MAX_SEARCH_IDS} per search"
    for patient_id in ids:
        if not is_valid_id(patient_id):
            return (), f"invalid id {patient_id[:80]!r}: must match [A-Za-z0-9-.]{{1,64}}"
    return ids, ""


def _base_url(scope: Scope) -> str:
    """The FHIR base URL the client used: the Host header when it is a plain host[:port],
    else the address the server listens on."""
    host = None
    for name, value in scope["headers"]:
        if name == b"host":
            host = value.decode("latin-1")
            break
    if host is None or not _HOST.fullmatch(host):
        server = scope.get("server") or ("127.0.0.1", 80)
        host = f"{server[0]}:{server[1]}"
    return f"{scope.get('scheme', 'http')}://{host}{FHIR_BASE}"
