"""The audit log of a real `carebench serve` under concurrent load: one record for every
request that reached a patient route, whatever its outcome, with the status its client saw;
the refusals of a sink that cannot keep up; and no patient's name or birth date in any log."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from carebench.backends import sqlite as sqlite_backend
from carebench.backends.records import synthetic_patient
from carebench.server.process import ServerProcess
from tests.auth.conftest import AUDIENCE, ISSUER, SigningKey, make_key
from tests.fhir.validation import validate

pytestmark = pytest.mark.slow

PER_KIND = 6
FLOOD = 200
ABANDONED = 0  # what a client that closed its connection before the answer saw


@dataclass
class Traffic:
    """What the clients sent (request id -> kind) and saw (request id -> status)."""

    kinds: dict[str, str] = field(default_factory=dict)
    seen: dict[str, int] = field(default_factory=dict)
    bodies: list[bytes] = field(default_factory=list)
    audit_refused: set[str] = field(default_factory=set)

    def new_id(self, kind: str) -> str:
        request_id = f"{kind}-{len(self.kinds):05d}"
        self.kinds[request_id] = kind
        return request_id


async def send(
    client: httpx.AsyncClient, traffic: Traffic, kind: str, path: str, **headers: str
) -> None:
    request_id = traffic.new_id(kind)
    response = await client.get(path, headers={"X-Request-ID": request_id, **headers})
    traffic.seen[request_id] = response.status_code
    traffic.bodies.append(response.content)
    if b"audit log unavailable" in response.content:
        traffic.audit_refused.add(request_id)


async def abandon(url: str, traffic: Traffic, path: str, **headers: str) -> None:
    """Send a whole request, then close the connection before any answer."""
    request_id = traffic.new_id("abandoned")
    address = urlsplit(url)
    _, writer = await asyncio.open_connection(address.hostname, address.port)
    lines = [f"GET {path} HTTP/1.1", f"Host: {address.netloc}", f"X-Request-ID: {request_id}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await writer.drain()
    writer.close()
    await writer.wait_closed()
    traffic.seen[request_id] = ABANDONED


async def gather_limited(jobs: list[Any], concurrency: int) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def run(job: Any) -> None:
        async with gate:
            await job

    await asyncio.gather(*(run(job) for job in jobs))


def records_by_id(lines: list[dict[str, Any]]) -> dict[str, int]:
    """request id -> status of every record; a duplicate fails."""
    found: dict[str, int] = {}
    for line in lines:
        if line.get("resourceType") == "AuditEvent":
            request_id = line["entity"][-1]["what"]["identifier"]["value"]
            status = int(line["outcomeDesc"].split()[0])
        else:
            request_id, status = line["request_id"], line["status"]
        assert request_id not in found, f"two records for {request_id}"
        found[request_id] = status
    return found


def check_completeness(traffic: Traffic, records: dict[str, int]) -> Counter[int]:
    """Exactly one record per request that was not refused for want of one, with the status
    the client saw (a client that left: 499, whatever its query came to); the statuses."""
    expected = set(traffic.seen) - traffic.audit_refused
    assert set(records) == expected
    for request_id in expected:
        seen = traffic.seen[request_id]
        if seen == ABANDONED:
            assert records[request_id] == 499, (request_id, records[request_id])
        else:
            assert records[request_id] == seen, (request_id, seen, records[request_id])
    return Counter(records.values())


def serve_then_stop(
    args: list[str], drive: Callable[[ServerProcess], Coroutine[Any, Any, None]]
) -> ServerProcess:
    """Run `drive` against a server, then stop it (it drains and writes every record); the
    stopped server with its output."""
    server = ServerProcess(args)
    try:
        server.start()
        asyncio.run(drive(server))
    finally:
        status = server.stop()
    assert status == 0, server.output[-20:]
    return server


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> SigningKey:
    return make_key(tmp_path_factory.mktemp("audit-e2e-key"))


def test_every_outcome_is_recorded_once_under_load(key: SigningKey, tmp_path: Path) -> None:
    """JWT, SQLite, a rate limit, injected errors and a tight critical deadline: 200, 400,
    401, 403, 404, 429, 499, 500 and 504 all happen, and the log has exactly one record per
    request with its status, who asked, and nothing of any record but its id."""
    database = tmp_path / "patients.sqlite3"
    sqlite_backend.seed_file(database, 50)
    audit_log = tmp_path / "audit.jsonl"
    args = ["--backend", "sqlite", "--db-path", str(database), "--pattern", "ratelimit"]
    args += ["--rate-limit", "150", "--burst", "30", "--error-rate", "0.3"]
    args += ["--min-latency", "20ms", "--max-latency", "40ms", "--critical-timeout", "10ms"]
    args += ["--auth", "jwt", "--jwt-key", str(key.pem), "--jwt-issuer", ISSUER]
    args += ["--jwt-audience", AUDIENCE, "--log-level", "debug", "--audit-log", str(audit_log)]
    token = key.token(client_id="ward-app")
    limited = key.token(scope="patient/Patient.read", patient="P00001", sub="patient-1")
    good = {"Authorization": f"Bearer {token}", "X-Purpose-Of-Use": "TREAT"}
    traffic = Traffic()

    async def drive(server: ServerProcess) -> None:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            critical = {**good, "X-Request-Priority": "critical"}
            other = {"Authorization": f"Bearer {limited}"}
            gossip = {"Authorization": f"Bearer {token}", "X-Purpose-Of-Use": "GOSSIP"}
            kinds = [
                ("legacy", "/api/v1/patients?id={id}", good),
                ("read", "/fhir/Patient/{id}", good),
                ("search", "/fhir/Patient?_id={id},P00001", good),
                ("everything", "/fhir/Patient/{id}/$everything", good),
                ("unknown", "/fhir/Patient/X{id}", good),
                ("critical", "/fhir/Patient/{id}", critical),
                ("anonymous", "/fhir/Patient/{id}", {}),
                ("other", "/fhir/Patient/{id}", other),
                ("purpose", "/fhir/Patient/{id}", gossip),
            ]
            jobs = []
            for n in range(PER_KIND):
                patient = f"P{n + 2:05d}"
                for kind, path, headers in kinds:
                    url = path.format(id=patient)
                    jobs.append(send(client, traffic, kind, url, **headers))
                legacy, fhir = f"/api/v1/patients?id={patient}", f"/fhir/Patient/{patient}"
                jobs += [abandon(server.url, traffic, path, **good) for path in (legacy, fhir)]
            await gather_limited(jobs, 4)
            flood = [
                send(client, traffic, "flood", f"/api/v1/patients?id=P{n % 50 + 1:05d}", **good)
                for n in range(FLOOD)
            ]
            await gather_limited(flood, 48)

    server = serve_then_stop(args, drive)
    lines = [json.loads(line) for line in audit_log.read_text().splitlines()]
    statuses = check_completeness(traffic, records_by_id(lines))
    assert {200, 400, 401, 403, 404, 429, 499, 500, 504} <= set(statuses), statuses
    by_kind = {(traffic.kinds[line["request_id"]], line["status"]): line for line in lines}
    assert by_kind["anonymous", 401]["subject"] is None
    assert by_kind["other", 403]["subject"] == "patient-1"
    assert by_kind["purpose", 400]["purpose_of_use"] is None
    success = next(line for line in lines if line["status"] == 200)
    assert (success["subject"], success["client_id"]) == ("clinician-7", "ward-app")
    assert success["purpose_of_use"] == "TREAT" and success["client_address"] == "127.0.0.1"
    check_no_phi(traffic, "\n".join(server.output) + audit_log.read_text())


def check_no_phi(traffic: Traffic, logs: str) -> None:
    """No name or birth date of any patient served (they are in the bodies: the check can
    fail) appears in the server's output or the audit log."""
    patients = [synthetic_patient(f"P{n:05d}") for n in range(1, 51)]
    served = b"".join(traffic.bodies)
    assert any(patient.last_name.encode() in served for patient in patients)
    for patient in patients:
        for value in (patient.first_name, patient.last_name, patient.date_of_birth):
            assert value not in logs, f"{value!r} (a patient's) is in a log"


def test_a_sink_that_cannot_keep_up_refuses_instead(tmp_path: Path) -> None:
    """FHIR AuditEvents to standard output, which nobody reads while the load runs: once the
    pipe and --audit-queue-size are full, requests are refused 503 as unauditable (and not
    recorded), the pattern's own 503s are recorded, and every record is written at exit."""
    args = ["--pattern", "workerpool", "--workers", "1", "--queue-size", "2", "--quiet"]
    args += ["--min-latency", "1ms", "--max-latency", "3ms", "--error-rate", "0"]
    args += ["--audit-log", "-", "--audit-format", "fhir", "--audit-queue-size", "40"]
    traffic = Traffic()

    async def drive(server: ServerProcess) -> None:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            jobs = [
                send(client, traffic, "read", f"/fhir/Patient/P{n % 50 + 1:05d}")
                for n in range(600)
            ]
            await gather_limited(jobs, 16)
            metrics = (await client.get("/metrics")).json()["audit"]
            assert metrics["refused"] == len(traffic.audit_refused) > 0
            assert metrics["state"] == "ok" and metrics["pending"] == 40

    server = serve_then_stop(args, drive)
    lines = [json.loads(line) for line in server.output if line.startswith('{"resourceType"')]
    for line in lines[:50]:
        validate(line)
    statuses = check_completeness(traffic, records_by_id(lines))
    assert {200, 503} <= set(statuses), statuses
