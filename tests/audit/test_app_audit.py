"""The app with an audit trail: a record per lookup attempt (legacy and FHIR, every outcome),
who asked from the gate, refusals when the trail cannot record, and the trail in /metrics
and /health/ready. Every response is checked against the served OpenAPI document."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from carebench.backends.simulator import SimulatedBackend, SimulatorConfig
from carebench.patterns.base import PatternConfig, create_pattern
from carebench.server.app import CareBenchApp
from carebench.server.http import Message
from tests.audit.conftest import AuditedApp, MemorySink, trail_for
from tests.auth.conftest import SigningKey, jwt_gate, make_key

PATHS = {
    "/api/v1/patients?id=P00042": ("read", ["P00042"]),
    "/fhir/Patient/P00042": ("read", ["P00042"]),
    "/fhir/Patient?_id=P00042,P00043": ("search", ["P00042", "P00043"]),
    "/fhir/Patient/P00042/$everything": ("everything", ["P00042"]),
}


@pytest.fixture(scope="module")
def signing_key(tmp_path_factory: pytest.TempPathFactory) -> SigningKey:
    return make_key(tmp_path_factory.mktemp("audit-key"))


async def closed_lines(app: CareBenchApp, sink: MemorySink) -> list[dict[str, object]]:
    await app.shutdown()
    return sink.lines()


@pytest.mark.parametrize("path", list(PATHS))
async def test_each_patient_route_is_recorded(audited_app: AuditedApp, path: str) -> None:
    """One record per request, with the action, the ids, the client and the purpose."""
    sink = MemorySink()
    app, _, client = await audited_app(trail_for(sink))
    headers = {"X-Request-ID": "abc-1", "X-Purpose-Of-Use": "TREAT"}
    assert (await client.get(path, headers=headers)).status_code == 200
    (line,) = await closed_lines(app, sink)
    action, ids = PATHS[path]
    assert line["action"] == action and line["resource_ids"] == ids
    assert line["request_id"] == "abc-1" and line["purpose_of_use"] == "TREAT"
    assert line["client_address"] == "10.0.0.7" and line["subject"] is None
    assert (line["status"], line["outcome"]) == (200, "success")
    assert isinstance(line["latency_ms"], float) and line["latency_ms"] >= 0


async def test_the_other_routes_are_not_recorded(audited_app: AuditedApp) -> None:
    """Health, metrics, metadata and malformed ids name no record: no audit line."""
    sink = MemorySink()
    app, _, client = await audited_app(trail_for(sink))
    for path in ("/health", "/metrics", "/fhir/metadata", "/", "/api/v1/patients?id=%20"):
        await client.get(path)
    assert await closed_lines(app, sink) == []


async def test_failures_are_recorded_with_their_status(audited_app: AuditedApp) -> None:
    """A database error (500), a bad priority (400) and a bad purpose (400, the value not
    kept) are recorded like successes."""
    sink = MemorySink()
    app, backend, client = await audited_app(trail_for(sink))
    backend.fail_ids.add("P00066")
    assert (await client.get("/fhir/Patient/P00066")).status_code == 500
    bad_priority = {"X-Request-Priority": "urgent"}
    assert (await client.get("/fhir/Patient/P1", headers=bad_priority)).status_code == 400
    bad_purpose = {"X-Purpose-Of-Use": "curiosity"}
    response = await client.get("/api/v1/patients?id=P2", headers=bad_purpose)
    assert response.status_code == 400 and "X-Purpose-Of-Use" in response.json()["error"]
    lines = await closed_lines(app, sink)
    assert [(line["status"], line["outcome"]) for line in lines] == [
        (500, "error"),
        (400, "invalid"),
        (400, "invalid"),
    ]
    assert lines[2]["purpose_of_use"] is None and lines[2]["resource_ids"] == ["P2"]
    assert app.metrics.status_codes == {500: 1, 400: 2}


async def test_who_asked_comes_from_the_gate(
    audited_app: AuditedApp, signing_key: SigningKey
) -> None:
    """401 without a subject; 403 and 200 with the token's sub and client_id (or azp)."""
    sink = MemorySink()
    app, _, client = await audited_app(trail_for(sink), jwt_gate(signing_key))
    await client.get("/fhir/Patient/P1")
    token = signing_key.token(scope="patient/Patient.read", patient="P9", client_id="ward-app")
    await client.get("/fhir/Patient/P1", headers={"Authorization": f"Bearer {token}"})
    other = signing_key.token(sub="nurse-3", azp="bedside")
    await client.get("/fhir/Patient/P1", headers={"Authorization": f"Bearer {other}"})
    lines = await closed_lines(app, sink)
    assert [(line["status"], line["subject"], line["client_id"]) for line in lines] == [
        (401, None, None),
        (403, "clinician-7", "ward-app"),
        (200, "nurse-3", "bedside"),
    ]
    assert [line["outcome"] for line in lines] == ["denied", "denied", "success"]


async def test_a_failed_sink_refuses_requests_and_unreadies(audited_app: AuditedApp) -> None:
    """After a write error: 503 + Retry-After on every patient route, no backend call, /metrics
    and /metrics?format=prometheus say so, /health/ready is 503 audit_failed."""
    sink = MemorySink()
    sink.fail = OSError(28, "No space left on device")
    trail = trail_for(sink)
    app, backend, client = await audited_app(trail)
    await client.get("/fhir/Patient/P1")  # answered, then its record is lost
    await asyncio.to_thread(_until, lambda: trail.error is not None)
    calls = len(backend.calls)
    for path in PATHS:
        response = await client.get(path)
        assert response.status_code == 503 and response.headers["retry-after"] == "1"
        assert "audit log unavailable" in response.text
    assert len(backend.calls) == calls
    audit = (await client.get("/metrics")).json()["audit"]
    assert audit["state"] == "failed" and audit["refused"] == 4 and audit["lost"] == 1
    text = (await client.get("/metrics?format=prometheus")).text
    assert "carebench_audit_records_refused_total 4.0" in text
    assert 'carebench_audit_sink_state{state="failed"} 1.0' in text
    ready = await client.get("/health/ready")
    assert ready.status_code == 503 and ready.json()["status"] == "audit_failed"
    assert app.metrics.status_codes == {200: 1, 503: 4}


async def test_a_full_trail_refuses_with_503(audited_app: AuditedApp) -> None:
    """A sink that cannot keep up: past --audit-queue-size records pending, requests are
    refused (FHIR ones as OperationOutcomes), and admitted again once it catches up."""
    sink = MemorySink()
    sink.hold = threading.Event()
    trail = trail_for(sink, capacity=2)
    app, _, client = await audited_app(trail)
    assert (await client.get("/fhir/Patient/P1")).status_code == 200
    await asyncio.to_thread(sink.entered.wait, 10)
    assert (await client.get("/fhir/Patient/P2")).status_code == 200
    refused = await client.get("/fhir/Patient/P3")
    assert refused.status_code == 503 and refused.json()["resourceType"] == "OperationOutcome"
    sink.hold.set()
    await asyncio.to_thread(_until, lambda: trail.pending == 0)
    assert (await client.get("/fhir/Patient/P4")).status_code == 200
    ids = [line["resource_ids"] for line in await closed_lines(app, sink)]
    assert ids == [["P1"], ["P2"], ["P4"]]


class DepartingConnection:
    """uvicorn's per-request object: the client leaves before the answer is written."""

    def __init__(self) -> None:
        self.disconnected = False

    async def receive(self) -> Message:
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        self.disconnected = True


async def test_an_answer_nobody_received_is_client_gone(audited_app: AuditedApp) -> None:
    """The app counts it 499; so does the audit record."""
    sink = MemorySink()
    app, _, _ = await audited_app(trail_for(sink))
    connection = DepartingConnection()
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/fhir/Patient/P1",
        "query_string": b"",
        "headers": [],
    }
    await app(scope, connection.receive, connection.send)
    (line,) = await closed_lines(app, sink)
    assert (line["status"], line["outcome"], line["client_address"]) == (499, "client_gone", None)


async def test_an_exception_escaping_the_app_is_recorded_as_500(audited_app: AuditedApp) -> None:
    """Even a failure outside the pattern's handling leaves its record (status 500)."""
    sink = MemorySink()
    app, _, _ = await audited_app(trail_for(sink))

    class BrokenConnection(DepartingConnection):
        async def send(self, message: Message) -> None:
            raise RuntimeError("the connection broke")

    connection = BrokenConnection()
    scope = {"type": "http", "method": "GET", "path": "/fhir/Patient/P1", "headers": []}
    with pytest.raises(RuntimeError):
        await app(scope, connection.receive, connection.send)
    (line,) = await closed_lines(app, sink)
    assert line["status"] == 500


async def test_without_audit_the_lookup_path_is_the_plain_one() -> None:
    """Audit off: requests go straight to _serve, no trail anywhere (zero cost)."""
    backend = SimulatedBackend(SimulatorConfig(min_latency=0, max_latency=0, error_rate=0))
    app = CareBenchApp(create_pattern("naive", backend, PatternConfig()), backend)
    assert app._lookup == app._serve and app.audit is None
    assert "audit" not in app.metrics_snapshot()


def _until(condition: object) -> None:
    """Wait (in a thread, for the writer) until `condition()` holds; 10 s at most."""
    deadline = time.monotonic() + 10
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.001)
