"""A client that leaves before its answer is written: 499 in /metrics and the audit log,
whatever the pattern or backend made of its request (an error, a timeout, a refusal)."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from carebench.backends import sqlite as sqlite_backend
from carebench.errors import (
    BackendError,
    ClientGone,
    DeadlineExceeded,
    PatientNotFound,
    RateLimited,
    Rejected,
)
from carebench.models import Answer, Query
from carebench.patterns.stats import PatternStats
from carebench.responses import PlainResponseEncoder, ResponseEncoder
from carebench.server.app import CareBenchApp
from carebench.server.http import Message
from carebench.server.process import ServerProcess
from tests.fakes import GatedBackend

#: What the pattern raised -> the status, outcome and Retry-After a client still there gets.
FAILURES: list[tuple[BaseException, int, str, bytes | None]] = [
    (BackendError("injected database error"), 500, "error", None),
    (DeadlineExceeded("deadline exceeded"), 504, "timeout", None),
    (Rejected("queue full", retry_after=2.5), 503, "rejected", b"3"),
    (RateLimited("over 10/s"), 429, "rejected", b"1"),
    (PatientNotFound("P1"), 404, "invalid", None),
    (RuntimeError("a bug"), 500, "error", None),
    (asyncio.CancelledError(), 503, "rejected", b"1"),  # the drain was cut with it running
    (ClientGone(), 499, "cancelled", None),  # skipped in a queue: nothing is ever sent
]
FAILURE_IDS = [type(row[0]).__name__ for row in FAILURES]
FAILURE_FIELDS = ("failure", "status", "outcome", "retry_after")


class FailingPattern:
    """A pattern whose every submit raises `failure`, after the client left when `leaves`."""

    name = "failing"
    bounded = True
    capacity = None
    backend_concurrency = None

    def __init__(self, failure: BaseException, leaves: bool) -> None:
        self.encoder: ResponseEncoder = PlainResponseEncoder()
        self.failure = failure
        self.leaves = leaves

    async def start(self) -> None:
        """Nothing to start."""

    async def submit(self, query: Query) -> Answer:
        if self.leaves:
            query.connection.disconnected = True
        raise self.failure

    def stats(self) -> PatternStats:
        raise NotImplementedError

    async def shutdown(self, drain_timeout: float) -> None:
        """Nothing to stop."""


class Connection:
    """uvicorn's per-request object as the app sees it: `disconnected`, receive(), send()."""

    def __init__(self) -> None:
        self.disconnected = False
        self.sent: list[Message] = []

    async def receive(self) -> Message:
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        self.sent.append(message)


async def serve_one(failure: BaseException, leaves: bool) -> tuple[CareBenchApp, Connection]:
    """One legacy lookup through an app whose pattern raises `failure`."""
    app = CareBenchApp(FailingPattern(failure, leaves), GatedBackend(open_gate=True))
    app.drain_cut = True  # so that a cancellation is the drain's cut, answered 503
    await app.startup()
    connection = Connection()
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/api/v1/patients",
        "query_string": b"id=P1",
        "headers": [],
    }
    try:
        await app(scope, connection.receive, connection.send)
    finally:
        await app.shutdown()
    return app, connection


@pytest.mark.parametrize(FAILURE_FIELDS, FAILURES, ids=FAILURE_IDS)
async def test_a_failed_lookup_of_a_departed_client_is_499(
    failure: BaseException, status: int, outcome: str, retry_after: bytes | None
) -> None:
    """Whatever failed, a client gone meanwhile is sent nothing and counted 499 (cancelled)."""
    app, connection = await serve_one(failure, leaves=True)
    assert connection.sent == []
    assert app.metrics.status_codes == {499: 1}
    assert app.metrics.count("cancelled") == 1


@pytest.mark.parametrize(FAILURE_FIELDS, FAILURES, ids=FAILURE_IDS)
async def test_a_failed_lookup_of_a_present_client_gets_its_error(
    failure: BaseException,
    status: int,
    outcome: str,
    retry_after: bytes | None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A client still there is sent the failure's status (and Retry-After for a refusal);
    only an unexpected exception is logged with its traceback."""
    with caplog.at_level(logging.ERROR, "carebench.server"):
        app, connection = await serve_one(failure, leaves=False)
    assert app.metrics.status_codes == {status: 1}
    assert app.metrics.count(outcome) == 1
    if status == 499:
        assert connection.sent == []
        return
    start, body = connection.sent
    assert start["status"] == status
    assert json.loads(body["body"])["success"] is False
    assert dict(start["headers"]).get(b"retry-after") == retry_after
    logged = [record for record in caplog.records if record.exc_info]
    assert len(logged) == (1 if isinstance(failure, RuntimeError) else 0)


async def abandon(url: str, count: int) -> list[asyncio.StreamWriter]:
    """Send `count` whole requests, each on a connection of its own, and keep them open."""
    address = urlsplit(url)
    writers = []
    for n in range(count):
        _, writer = await asyncio.open_connection(address.hostname, address.port)
        head = f"GET /fhir/Patient/P{n + 1:05d} HTTP/1.1\r\nHost: {address.netloc}\r\n"
        writer.write(f"{head}X-Request-ID: gone-{n}\r\n\r\n".encode())
        await writer.drain()
        writers.append(writer)
    return writers


async def poll_metrics(client: httpx.AsyncClient, until: Any, what: str) -> dict[str, Any]:
    """/metrics once `until(document)` holds (readiness polling, generous bound)."""
    for _ in range(1000):
        document: dict[str, Any] = (await client.get("/metrics")).json()
        if until(document):
            return document
        await asyncio.sleep(0.01)
    raise AssertionError(f"never saw {what}: {document}")


async def leave_mid_query(url: str, count: int) -> dict[str, Any]:
    """`count` clients leave while their queries run; /metrics once all are answered."""
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        writers = await abandon(url, count)
        await poll_metrics(
            client,
            lambda document: document["backend"]["active_queries"] >= count,
            f"{count} queries running",
        )
        for writer in writers:
            writer.close()
            await writer.wait_closed()
        return await poll_metrics(
            client,
            lambda document: document["total_requests"] >= count,
            f"{count} requests counted",
        )


def backend_args(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> list[str]:
    """`serve` flags for a seeded `backend`."""
    if backend == "sqlite":
        database = tmp_path / "patients.sqlite3"
        sqlite_backend.seed_file(database, 20)
        return ["--backend", "sqlite", "--db-path", str(database)]
    if backend == "postgres":
        return ["--backend", "postgres", "--dsn", request.getfixturevalue("postgres_dsn")]
    return ["--backend", "simulator"]


@pytest.mark.slow
@pytest.mark.parametrize("error_rate", ["0", "1"])
@pytest.mark.parametrize(
    "backend", ["sqlite", "simulator", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def test_clients_that_leave_mid_query_are_499_on_every_backend(
    backend: str, error_rate: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A real server: clients that close their connections while their (slow) queries run,
    which then succeed or fail, are 499 (client_gone) in /metrics and the audit log, never
    200 or 500."""
    audit_log = tmp_path / "audit.jsonl"
    args = [*backend_args(backend, tmp_path, request), "--error-rate", error_rate, "--quiet"]
    args += ["--min-latency", "1s", "--max-latency", "1s", "--audit-log", str(audit_log)]
    with ServerProcess(args) as server:
        metrics = await leave_mid_query(server.url, 4)
    assert metrics["status_codes"] == {"499": 4}
    assert metrics["cancelled_requests"] == 4 and metrics["error_requests"] == 0
    records = [json.loads(line) for line in audit_log.read_text().splitlines()]
    assert sorted((line["request_id"], line["status"], line["outcome"]) for line in records) == [
        (f"gone-{n}", 499, "client_gone") for n in range(4)
    ]
