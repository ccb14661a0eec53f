"""Channels: one virtual client's way to ask for a patient, over HTTP or straight to a pattern."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol, cast

from carebench.errors import (
    BackendError,
    ClientGone,
    DeadlineExceeded,
    PatientNotFound,
    RateLimited,
    Rejected,
)
from carebench.fhir import resources as fhir
from carebench.loadgen.client import ConnectionClosed, HttpConnection, ResponseCallback
from carebench.loadgen.endpoints import ENDPOINTS
from carebench.loadgen.results import REJECTION_STATUSES
from carebench.models import EVERYTHING, READ, SEARCH, Answer, ClinicalRecord, Patient, Query
from carebench.patterns.base import Pattern

PATIENTS_PATH = ENDPOINTS["legacy"].prefix
#: Encoded requests a channel keeps (a bound for runs over many distinct ids).
CACHED_REQUESTS = 4096


class Channel(Protocol):
    """Sends one request at a time and returns its HTTP status (or the status it stands for).

    `retry_after` is the Retry-After (seconds) of the last refused request, 0 when none.
    """

    retry_after: float

    async def fetch(self, patient_id: str, priority: str | None = None) -> int:
        """Raises OSError (ConnectionError included) when the connection fails."""
        ...

    def reset(self) -> None:
        """Forget connection state after a timeout or failure; the next fetch reconnects."""
        ...

    def close(self) -> None: ...


class HttpChannel:
    """A keep-alive HTTP/1.1 connection to the server, reopened when it breaks; over TLS with
    `tls` (only opening a connection differs)."""

    def __init__(
        self,
        host: str,
        port: int,
        base_path: str = "",
        endpoint: str = "legacy",
        *,
        tls: ssl.SSLContext | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """`headers` go with every request (an Authorization header, from --token)."""
        self._headers = dict(headers or {})
        self._host = host
        self._port = port
        self._tls = tls
        self._prefix = base_path + ENDPOINTS[endpoint].prefix
        self._suffix = ENDPOINTS[endpoint].suffix
        self._connection: HttpConnection | None = None
        #: Encoded requests without a priority, by patient id (ids repeat: fixed, uniform:N);
        #: filled by fetch and send_then, cleared in place when full.
        self.requests: dict[str, bytes] = {}
        self.retry_after = 0.0

    async def fetch(self, patient_id: str, priority: str | None = None) -> int:
        connection = self._connection
        if connection is None or connection.closed:
            connection = self._connection = await self._open()
        if priority:
            headers = {**self._headers, "X-Request-Priority": priority}
            request = connection.encode_get(self._prefix + patient_id + self._suffix, headers)
        else:
            request = self.requests.get(patient_id) or self._encode(connection, patient_id)
        waiter = connection.send(request)
        try:
            response = await waiter
        except asyncio.CancelledError:
            # The late response would otherwise be read as the answer to the next request.
            connection.close()
            raise
        status = response.status
        # Only a refusal's Retry-After is ever read (by --honor-retry-after), so only a
        # refusal pays for decoding headers.
        if status in REJECTION_STATUSES:
            self.retry_after = _seconds(response.headers.get("retry-after"))
        else:
            self.retry_after = 0.0
        return status

    async def connect(self) -> None:
        """Open the connection if there is none; raises OSError when that fails."""
        if self._connection is None or self._connection.closed:
            self._connection = await self._open()

    def _open(self) -> Awaitable[HttpConnection]:
        # Only statuses are read, and a refusal's Retry-After: no body, no other headers.
        return HttpConnection.open(
            self._host,
            self._port,
            keep_body=False,
            headers_for=REJECTION_STATUSES,
            tls=self._tls,
        )

    def send_then(self, patient_id: str, priority: str | None, on_done: ResponseCallback) -> bool:
        """Send without awaiting: `on_done(response, None)` or `(None, error)` follows, from
        the event loop. False (nothing sent) when there is no open connection: `connect()`
        first. Unlike `fetch`, this leaves `retry_after` alone: read the response's header.
        """
        connection = self._connection
        if connection is None:
            return False
        if priority:
            headers = {**self._headers, "X-Request-Priority": priority}
            request = connection.encode_get(self._prefix + patient_id + self._suffix, headers)
        else:
            request = self.requests.get(patient_id) or self._encode(connection, patient_id)
        try:
            connection.send_then(request, on_done)
        except ConnectionClosed:  # checked here rather than before: one call less per request
            return False
        return True

    @property
    def send_encoded(self) -> Callable[[bytes, ResponseCallback], None] | None:
        """The open connection's own `send_then(request, on_done)` for a request already in
        `requests` (None when there is none). It raises ConnectionClosed once that connection
        closes, and stays bound to it: after that, `send_then` (which reconnects) again.

        For the closed loop's hot path: one call per request instead of two (~0.05 us).
        """
        connection = self._connection
        return None if connection is None else connection.send_then

    def _encode(self, connection: HttpConnection, patient_id: str) -> bytes:
        if len(self.requests) >= CACHED_REQUESTS:
            self.requests.clear()
        path = self._prefix + patient_id + self._suffix
        # Encoded once per id, token included: the hot path stays one dict lookup.
        request = self.requests[patient_id] = connection.encode_get(path, self._headers)
        return request

    def reset(self) -> None:
        self.close()

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class InProcessChannel:
    """Calls the pattern directly (no HTTP), mapping its outcomes to the statuses HTTP would use.

    The body is still encoded, so the pattern's encoder (pooled or not) is part of the cost.
    """

    def __init__(
        self, pattern: Pattern, deadlines: dict[str, float], endpoint: str = "legacy"
    ) -> None:
        self._pattern = pattern
        self._deadlines = deadlines
        self._lookup = ENDPOINTS[endpoint].lookup
        #: The legacy body, or FHIR's: what the server would encode for this endpoint.
        self._fhir = endpoint != "legacy"
        self.retry_after = 0.0

    async def fetch(self, patient_id: str, priority: str | None = None) -> int:
        loop = asyncio.get_running_loop()
        priority = priority or "standard"
        deadline = loop.time() + self._deadlines[priority]
        query = Query(patient_id, deadline, "inprocess", priority, lookup=self._lookup)
        if self._lookup == SEARCH:
            query.patient_ids = (patient_id,)
        self.retry_after = 0.0
        try:
            patient = await self._pattern.submit(query)
        except RateLimited as limited:
            self.retry_after = limited.retry_after
            return 429
        except Rejected as rejected:
            self.retry_after = rejected.retry_after
            return 503
        except DeadlineExceeded:
            return 504
        except BackendError:
            return 500
        except PatientNotFound:
            return 404
        except ClientGone:
            return 499
        self._encode(patient, query.request_id)
        return 200

    def _encode(self, answer: Answer, request_id: str) -> bytes:
        if not self._fhir:
            # A READ query (the legacy endpoint's lookup) is answered with its patient.
            return self._pattern.encoder.encode_patient(cast(Patient, answer), request_id)
        if self._lookup == READ:
            return fhir.encode_patient(cast(Patient, answer))
        base = "http://inprocess/fhir"
        if self._lookup == EVERYTHING:
            return fhir.encode_everything(cast(ClinicalRecord, answer), base, base)
        return fhir.encode_search(cast(tuple[Patient, ...], answer), base, base)

    def reset(self) -> None:
        """Nothing to reconnect."""

    def close(self) -> None:
        """Nothing to close."""


def _seconds(header: str | None) -> float:
    """A Retry-After given in seconds (the HTTP-date form is not used by carebench): 0 if absent."""
    if not header:
        return 0.0
    try:
        return max(0.0, float(header))
    except ValueError:
        return 0.0
