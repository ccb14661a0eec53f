"""The HTTP API through every pattern: bodies, error shapes, headers, health and metrics."""

from __future__ import annotations

import asyncio

import httpx
from prometheus_client.parser import text_string_to_metric_families

from carebench.backends.records import synthetic_patient
from carebench.backends.simulator import SimulatedBackend, SimulatorConfig
from carebench.server.http import Message
from tests.fakes import GatedBackend
from tests.server.conftest import AppFactory

REFERENCE_FIELDS = {
    "id", "medical_record_number", "first_name", "last_name", "date_of_birth", "gender",
    "diagnosis_codes", "medications", "allergies", "last_visit_date", "primary_physician",
    "insurance_provider", "blood_type",
}  # fmt: skip


def assert_error_shape(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status
    body: dict[str, object] = response.json()
    assert body["success"] is False
    assert isinstance(body["error"], str) and body["error"]
    assert body["timestamp"] and body["request_id"] == response.headers["x-request-id"]
    assert "patient" not in body
    return body


async def test_patient_body_is_complete_and_deterministic(make_app: AppFactory) -> None:
    """200 with the full record in the reference's envelope, identical for the same id."""
    _, client = await make_app()
    first = await client.get("/api/v1/patients", params={"id": "P12345"})
    second = await client.get("/api/v1/patients", params={"id": "P12345"})
    assert first.status_code == 200
    body = first.json()
    assert body["success"] is True and "error" not in body
    assert set(body["patient"]) == REFERENCE_FIELDS
    assert body["patient"]["id"] == "P12345"
    assert body["patient"] == second.json()["patient"]
    assert body["patient"]["first_name"] == synthetic_patient("P12345").first_name
    assert first.headers["content-type"] == "application/json"


async def test_request_id_is_echoed_or_generated(make_app: AppFactory) -> None:
    """X-Request-ID from the client comes back in header and body; absent, one is made."""
    _, client = await make_app()
    echoed = await client.get("/api/v1/patients?id=P1", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123" == echoed.json()["request_id"]
    generated = await client.get("/api/v1/patients?id=P1")
    assert len(generated.headers["x-request-id"]) >= 16
    assert generated.json()["request_id"] == generated.headers["x-request-id"]
    hostile = await client.get("/api/v1/patients?id=P1", headers={"X-Request-ID": "a b<script>"})
    assert hostile.headers["x-request-id"] != "a b<script>"


async def test_bad_ids_are_400(make_app: AppFactory) -> None:
    """Missing, empty, over-long and ill-formed ids get a 400 JSON error."""
    app, client = await make_app()
    for target in (
        "/api/v1/patients",
        "/api/v1/patients?id=",
        "/api/v1/patients?id=" + "x" * 65,
        "/api/v1/patients?id=P%201",
        "/api/v1/patients?id=%27%3B%20DROP",
    ):
        body = assert_error_shape(await client.get(target), 400)
        assert "id" in str(body["error"])
    assert app.metrics.count("invalid") == 5


async def test_unknown_route_404_and_wrong_method_405(make_app: AppFactory) -> None:
    """Unknown paths are 404 and non-GET methods 405 with Allow, both in the error shape."""
    _, client = await make_app()
    assert_error_shape(await client.get("/nope"), 404)
    response = await client.post("/api/v1/patients?id=P1")
    assert_error_shape(response, 405)
    assert response.headers["allow"] == "GET"


async def test_backend_error_is_500(make_app: AppFactory) -> None:
    """A failing backend query is a 500 whose error names the database."""
    backend = GatedBackend(open_gate=True)
    backend.fail_ids.add("P500")
    app, client = await make_app(backend)
    body = assert_error_shape(await client.get("/api/v1/patients?id=P500"), 500)
    assert "database error" in str(body["error"])
    assert app.metrics.count("error") == 1


async def test_deadline_is_504(make_app: AppFactory) -> None:
    """A backend slower than the request timeout yields 504."""
    app, client = await make_app(GatedBackend(), request_timeout=0.05)
    assert_error_shape(await client.get("/api/v1/patients?id=P1"), 504)
    assert app.metrics.count("timeout") == 1


async def test_overload_is_refused_with_retry_after(make_app: AppFactory) -> None:
    """Past capacity: 503 (429 when rate limited) + Retry-After; each request counted once."""
    backend = GatedBackend()
    app, client = await make_app(backend, workers=1, queue_size=1)
    capacity = app.pattern.capacity
    admitted = 5 if capacity is None else min(5, capacity)
    requests = [asyncio.create_task(client.get(f"/api/v1/patients?id=P{i}")) for i in range(5)]
    await backend.wait_active(1)
    for _ in range(50):
        await asyncio.sleep(0)
    backend.release()
    responses = await asyncio.gather(*requests)
    statuses = sorted(r.status_code for r in responses)
    refused = 429 if app.pattern.name == "ratelimit" else 503
    assert statuses == [200] * admitted + [refused] * (5 - admitted)
    for response in responses:
        if response.status_code == refused:
            assert_error_shape(response, refused)
            assert int(response.headers["retry-after"]) >= 1
    # Each request is counted once, under the outcome its status says (a 429 is a rejection).
    snapshot = app.metrics.snapshot()
    assert snapshot["total_requests"] == 5
    assert snapshot["success_requests"] == admitted
    assert snapshot["rejected_requests"] == 5 - admitted
    assert snapshot["error_requests"] == snapshot["timeout_requests"] == 0
    assert snapshot["cancelled_requests"] == snapshot["invalid_requests"] == 0
    assert snapshot["status_codes"] == {
        str(status): statuses.count(status) for status in sorted(set(statuses))
    }


async def test_counters_add_up_across_outcomes(make_app: AppFactory) -> None:
    """total = success + error + rejected + timeouts (+ invalid) in /metrics after mixed traffic."""
    backend = GatedBackend(open_gate=True)
    backend.fail_ids.add("PERR")
    _, client = await make_app(backend)
    for target in ("P1", "P2", "PERR", "bad!"):
        await client.get(f"/api/v1/patients?id={target}")
    metrics = (await client.get("/metrics")).json()
    assert metrics["total_requests"] == 4
    assert metrics["success_requests"] == 2
    assert metrics["error_requests"] == 1
    assert metrics["invalid_requests"] == 1
    assert metrics["error_rate_percent"] == 25.0
    assert metrics["status_codes"] == {"200": 2, "400": 1, "500": 1}


async def test_health_does_not_query_the_backend(make_app: AppFactory) -> None:
    """/health reports status, pattern and counters without running a query."""
    backend = SimulatedBackend(SimulatorConfig(0.0, 0.0, error_rate=1.0, profile="ideal"))
    app, client = await make_app(backend)
    for _ in range(20):
        response = await client.get("/health")
        assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy"
    assert body["pattern"] == app.pattern.name
    assert body["backend"]["total_queries"] == 0
    assert body["uptime_seconds"] >= 0


async def test_metrics_json_reflects_traffic_and_state(make_app: AppFactory) -> None:
    """/metrics has the reference's fields, pattern state, process state and an HdrHistogram."""
    _, client = await make_app(queue_size=20)
    for i in range(10):
        await client.get(f"/api/v1/patients?id=P{i}")
    metrics = (await client.get("/metrics")).json()
    assert metrics["total_requests"] == metrics["success_requests"] == 10
    for key in ("min", "mean", "median", "p95", "p99", "max"):
        assert metrics["latency_ms"][key] > 0
    assert metrics["requests_per_second"] > 0
    assert {"in_flight", "queued", "queue_capacity", "workers_busy", "object_pool"} <= set(
        metrics["pattern_state"]
    )
    assert metrics["process"]["rss_bytes"] > 0
    assert metrics["latency_histogram"].startswith("HISTF")


async def test_metrics_prometheus_exposition(make_app: AppFactory) -> None:
    """?format=prometheus is valid exposition with outcome-labelled counters and histogram."""
    app, client = await make_app()
    await client.get("/api/v1/patients?id=P1")
    await client.get("/api/v1/patients?id=bad!")
    response = await client.get("/metrics?format=prometheus")
    assert response.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    requests = {
        s.labels["outcome"]: s.value
        for s in families["carebench_requests"].samples
        if s.name == "carebench_requests_total"
    }
    assert requests["success"] == 1 and requests["invalid"] == 1
    assert all(
        s.labels["pattern"] == app.pattern.name for s in families["carebench_requests"].samples
    )
    assert "carebench_request_duration_seconds" in families
    assert "carebench_in_flight" in families
    assert "process_resident_memory_bytes" in families


async def test_metrics_unknown_format_is_400(make_app: AppFactory) -> None:
    """An unknown ?format is a 400 naming the valid ones."""
    _, client = await make_app()
    for query in ("format=xml", "format="):
        body = assert_error_shape(await client.get(f"/metrics?{query}"), 400)
        assert "prometheus" in str(body["error"])


async def test_index_lists_endpoints(make_app: AppFactory) -> None:
    """GET / names the service, its pattern and example curls."""
    app, client = await make_app()
    body = (await client.get("/")).json()
    assert body["name"] == "carebench" and body["pattern"] == app.pattern.name
    assert any("curl" in example for example in body["endpoints"].values())


async def test_unknown_priority_is_400(make_app: AppFactory) -> None:
    """X-Request-Priority other than critical/standard/batch (empty too) is a 400 naming the
    choices."""
    app, client = await make_app()
    for value in ("vip", ""):
        headers = {"X-Request-Priority": value}
        response = await client.get("/api/v1/patients?id=P1", headers=headers)
        body = assert_error_shape(response, 400)
        assert "critical, standard or batch" in str(body["error"])
    assert app.metrics.count("invalid") == 2


async def test_priority_class_sets_the_deadline(make_app: AppFactory) -> None:
    """A critical request gets the critical deadline; the 504 says which class expired."""
    app, client = await make_app(GatedBackend())
    app.deadlines["critical"] = 0.05
    response = await client.get(
        "/api/v1/patients?id=P1", headers={"X-Request-Priority": "critical"}
    )
    body = assert_error_shape(response, 504)
    assert "critical" in str(body["error"]) and "0.05s" in str(body["error"])


class DepartingConnection:
    """uvicorn's per-request object as the app sees it: `disconnected`, and receive()."""

    def __init__(self) -> None:
        self.disconnected = False

    async def receive(self) -> Message:
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        # The server drops the write: the client left before its answer.
        self.disconnected = True


async def test_an_answer_nobody_received_counts_as_cancelled(make_app: AppFactory) -> None:
    """A 200 the server could not deliver (the client left meanwhile) is a cancelled request
    (499), not a success."""
    app, _ = await make_app()
    connection = DepartingConnection()
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/api/v1/patients",
        "query_string": b"id=P1",
        "headers": [],
    }
    await app(scope, connection.receive, connection.send)
    assert app.metrics.count("cancelled") == 1 and app.metrics.count("success") == 0
    assert app.metrics.status_codes == {499: 1}
