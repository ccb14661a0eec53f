"""The FHIR routes in process: every response is validated as a FHIR resource (fhir.resources)
and checked against the app's OpenAPI document; every lookup takes the pattern's path."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import httpx
import pytest

from carebench.backends.records import synthetic_clinical, synthetic_patient
from carebench.backends.simulator import SimulatedBackend, SimulatorConfig
from carebench.errors import PatientNotFound
from carebench.fhir import resources
from carebench.loop_clock import ManualLoopClock
from carebench.models import Patient
from carebench.patterns.base import PatternConfig, create_pattern, pattern_names
from carebench.server.app import CareBenchApp
from tests.contract import ConformanceHook, document_for
from tests.fakes import GatedBackend
from tests.fhir.validation import validate

FHIR = "application/fhir+json; fhirVersion=4.0"
Build = Callable[..., Coroutine[Any, Any, tuple[CareBenchApp, httpx.AsyncClient]]]


class LookupBackend(GatedBackend):
    """GatedBackend that knows a missing patient, as the SQL backends do."""

    async def get_patient(self, patient_id: str, deadline: float | None = None) -> Patient:
        if patient_id == "P404":
            raise PatientNotFound(patient_id)
        return await super().get_patient(patient_id, deadline)


@pytest.fixture
async def build() -> AsyncIterator[Build]:
    """(app, client) for a pattern and backend; every response checked against OpenAPI."""
    built: list[tuple[CareBenchApp, httpx.AsyncClient]] = []

    async def factory(
        pattern: str = "workerpool",
        backend: Any = None,
        config: PatternConfig | None = None,
        **app_options: Any,
    ) -> tuple[CareBenchApp, httpx.AsyncClient]:
        backend = backend or LookupBackend(open_gate=True)
        config = config or PatternConfig(4, 4, limit=8, burst=8)
        app = CareBenchApp(
            create_pattern(pattern, backend, config, ManualLoopClock()),
            backend,
            drain_timeout=1.0,
            **app_options,
        )
        await app.startup()
        hook = ConformanceHook(document_for(app._routes))
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://testserver",
            event_hooks={"response": [hook]},
        )
        built.append((app, client))
        return app, client

    yield factory
    for app, client in built:
        await client.aclose()
        await app.shutdown()


def fhir_body(response: httpx.Response, status: int) -> dict[str, Any]:
    """The response's body, validated as FHIR, after checking status and content type."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == FHIR
    validate(response.content)
    body: dict[str, Any] = json.loads(response.content)
    return body


def issue_code(response: httpx.Response, status: int) -> str:
    body = fhir_body(response, status)
    assert body["resourceType"] == "OperationOutcome"
    code: str = body["issue"][0]["code"]
    return code


@pytest.mark.parametrize("pattern", pattern_names())
async def test_every_route_answers_through_every_pattern(pattern: str, build: Build) -> None:
    """Read, search and $everything answer through each pattern with the records the
    backend holds; the legacy endpoint answers as before beside them."""
    app, client = await build(pattern)
    read = fhir_body(await client.get("/fhir/Patient/P7"), 200)
    assert json.loads(resources.encode_patient(synthetic_patient("P7"))) == read
    search = fhir_body(await client.get("/fhir/Patient", params={"_id": "P1,P2"}), 200)
    assert [entry["resource"]["id"] for entry in search["entry"]] == ["P1", "P2"]
    everything = fhir_body(await client.get("/fhir/Patient/P7/$everything"), 200)
    expected = resources.encode_everything(
        synthetic_clinical("P7"),
        "http://testserver/fhir",
        "http://testserver/fhir/Patient/P7/$everything",
    )
    assert everything == json.loads(expected)
    legacy = await client.get("/api/v1/patients", params={"id": "P7"})
    assert legacy.status_code == 200 and legacy.json()["patient"]["id"] == "P7"
    assert legacy.headers["content-type"] == "application/json"
    assert app.metrics.snapshot()["success_requests"] == 4


async def test_search_is_one_backend_query_and_leaves_unknown_ids_out(build: Build) -> None:
    """A search for ten ids (one repeated) is one query; repeats count once, the self link
    names the ids searched, and an unknown id is simply not matched."""
    database = SimulatedBackend(SimulatorConfig(min_latency=0, max_latency=0, error_rate=0))
    _, client = await build(backend=database)
    ids = [f"P{i}" for i in range(10)]
    response = await client.get("/fhir/Patient", params={"_id": ",".join([*ids, "P3"])})
    bundle = fhir_body(response, 200)
    assert database.queries == 1
    assert bundle["total"] == 10
    assert bundle["link"][0]["url"] == f"http://testserver/fhir/Patient?_id={','.join(ids)}"
    everything = fhir_body(await client.get("/fhir/Patient/P1/$everything"), 200)
    assert database.queries == 2 and everything["entry"][0]["resource"]["id"] == "P1"
    # A backend that knows missing patients (the real ones) leaves them out of a search.
    _, real = await build(backend=LookupBackend(open_gate=True))
    bundle = fhir_body(await real.get("/fhir/Patient", params={"_id": "P404,P1"}), 200)
    assert bundle["total"] == 1 and bundle["entry"][0]["resource"]["id"] == "P1"


async def test_metadata_describes_the_served_routes(build: Build) -> None:
    """GET /fhir/metadata is a CapabilityStatement; it needs no backend query."""
    database = SimulatedBackend(SimulatorConfig(min_latency=0, max_latency=0, error_rate=0))
    _, client = await build(backend=database)
    statement = fhir_body(await client.get("/fhir/metadata"), 200)
    assert statement["resourceType"] == "CapabilityStatement"
    assert statement["rest"][0]["resource"][0]["type"] == "Patient"
    assert database.queries == 0


@pytest.mark.parametrize(
    ("path", "params", "headers", "diagnostics"),
    [
        ("/fhir/Patient/bad!id", None, None, "invalid id"),
        ("/fhir/Patient/" + "x" * 65, None, None, "invalid id"),
        ("/fhir/Patient/bad!id/$everything", None, None, "invalid id"),
        ("/fhir/Patient", None, None, "missing required search parameter: _id"),
        ("/fhir/Patient", {"_id": ""}, None, "invalid id"),
        ("/fhir/Patient", {"_id": "P1,,P2"}, None, "invalid id"),
        ("/fhir/Patient", {"name": "Ada"}, None, "unsupported search parameter 'name'"),
        ("/fhir/Patient", [("_id", "P1"), ("_id", "P2")], None, "give _id once"),
        ("/fhir/Patient", {"_id": ",".join(f"P{i}" for i in range(101))}, None, "too many"),
        ("/fhir/Patient/P1", None, {"X-Request-Priority": "urgent"}, "X-Request-Priority"),
        ("/fhir/Patient", {"_id": "P1"}, {"X-Request-Priority": ""}, "X-Request-Priority"),
    ],
)
async def test_invalid_requests_are_400_operation_outcomes(
    build: Build, path: str, params: Any, headers: Any, diagnostics: str
) -> None:
    """Bad ids, search parameters and priorities: 400 with an `invalid` issue saying what,
    counted as invalid, and no backend query."""
    backend = LookupBackend(open_gate=True)
    app, client = await build(backend=backend)
    response = await client.get(path, params=params, headers=headers)
    assert issue_code(response, 400) == "invalid"
    assert diagnostics in response.json()["issue"][0]["diagnostics"]
    assert backend.calls == []
    assert app.metrics.snapshot()["invalid_requests"] == 1


async def test_unknown_patient_and_unknown_path_are_404(build: Build) -> None:
    """An unknown patient (read or $everything) and an unserved FHIR path: 404 not-found."""
    _, client = await build()
    for path in ("/fhir/Patient/P404", "/fhir/Patient/P404/$everything"):
        response = await client.get(path)
        assert issue_code(response, 404) == "not-found"
        assert "P404" in response.json()["issue"][0]["diagnostics"]
    for path in ("/fhir/Observation/1", "/fhir/Patient/P1/_history", "/fhir/"):
        assert issue_code(await client.get(path), 404) == "not-found"


@pytest.mark.parametrize("path", ["/fhir/Patient/P1", "/fhir/Patient", "/fhir/metadata"])
async def test_other_methods_are_405_with_allow(build: Build, path: str) -> None:
    """POST, PUT and DELETE on a FHIR path: 405 not-supported with `Allow: GET`."""
    _, client = await build()
    for method in ("POST", "PUT", "DELETE"):
        response = await client.request(method, path)
        assert issue_code(response, 405) == "not-supported"
        assert response.headers["allow"] == "GET"


async def test_rate_limited_is_429_with_retry_after(build: Build) -> None:
    """The ratelimit pattern's refusal: 429 throttled with Retry-After."""
    _, client = await build("ratelimit", config=PatternConfig(rate_limit=0.5, burst=1))
    fhir_body(await client.get("/fhir/Patient/P1"), 200)
    response = await client.get("/fhir/Patient", params={"_id": "P1,P2"})
    assert issue_code(response, 429) == "throttled"
    assert int(response.headers["retry-after"]) >= 1


async def test_rejected_is_503_with_retry_after(build: Build) -> None:
    """A full worker pool refuses: 503 transient with Retry-After."""
    backend = LookupBackend()
    _, client = await build(backend=backend, config=PatternConfig(1, 0))
    held = asyncio.create_task(client.get("/fhir/Patient/P1/$everything"))
    await backend.wait_active(1)
    response = await client.get("/fhir/Patient/P2")
    assert issue_code(response, 503) == "transient"
    assert int(response.headers["retry-after"]) >= 1
    backend.release()
    fhir_body(await held, 200)


async def test_deadline_is_504_per_priority_class(build: Build) -> None:
    """A lookup past its class's deadline: 504 timeout naming the class; the priority header
    sets the deadline as on the legacy endpoint."""
    backend = LookupBackend()
    app, client = await build(backend=backend, class_timeouts={"critical": 0.02})
    response = await client.get("/fhir/Patient/P1", headers={"X-Request-Priority": "critical"})
    assert issue_code(response, 504) == "timeout"
    assert "critical" in response.json()["issue"][0]["diagnostics"]
    assert app.metrics.snapshot()["timeout_requests"] == 1


async def test_database_error_is_500(build: Build) -> None:
    """A failing backend: 500 exception, counted as an error."""
    backend = LookupBackend(open_gate=True)
    backend.fail_ids.add("P9")
    app, client = await build(backend=backend)
    response = await client.get("/fhir/Patient/P9/$everything")
    assert issue_code(response, 500) == "exception"
    assert "database error" in response.json()["issue"][0]["diagnostics"]
    assert app.metrics.snapshot()["error_requests"] == 1


class LeavingClient:
    """uvicorn's per-request object as the app sees it: a `disconnected` flag beside receive."""

    def __init__(self) -> None:
        self.disconnected = False
        self.sent: list[Any] = []

    async def receive(self) -> Any:
        await asyncio.Event().wait()

    async def send(self, message: Any) -> None:
        self.sent.append(message)


async def test_a_client_gone_while_queued_is_skipped(build: Build) -> None:
    """A FHIR lookup whose client left while it waited in the queue never reaches the backend
    and counts as cancelled (499), as on the legacy endpoint."""
    backend = LookupBackend()
    app, client = await build(backend=backend, config=PatternConfig(1, 1))
    held = asyncio.create_task(client.get("/fhir/Patient/P1"))
    await backend.wait_active(1)
    leaving = LeavingClient()
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/fhir/Patient/P2/$everything",
        "query_string": b"",
        "headers": [],
    }
    queued = asyncio.create_task(app(scope, leaving.receive, leaving.send))
    for _ in range(100):
        if app.pattern.stats()["queued"] == 1:
            break
        await asyncio.sleep(0)
    assert app.pattern.stats()["queued"] == 1
    leaving.disconnected = True
    backend.release()
    fhir_body(await held, 200)
    await queued
    assert backend.calls == ["P1"] and leaving.sent == []
    assert app.metrics.count("cancelled") == 1
