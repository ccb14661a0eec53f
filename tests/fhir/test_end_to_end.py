"""The FHIR routes over a real socket: `carebench serve` on the simulator and on SQLite (and
the simulator on granian), each response validated with fhir.resources and compared with the
backend's synthetic records."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from carebench.backends import sqlite as sqlite_backend
from carebench.backends.records import synthetic_clinical, synthetic_patient
from carebench.fhir import resources
from carebench.server.process import ServerProcess
from tests.fhir.validation import validate

pytestmark = pytest.mark.slow

NO_LATENCY = ["--min-latency", "0", "--max-latency", "0", "--error-rate", "0", "--quiet"]


@pytest.fixture(scope="module", params=["simulator", "sqlite", "simulator on granian"])
def running(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerProcess, str]]:
    """A running server on the parametrised backend (SQLite seeded with 50 patients), on
    uvicorn unless granian is named (its app sees no `disconnected` flag)."""
    backend, _, server = request.param.partition(" on ")
    args = ["--backend", backend, *NO_LATENCY]
    if server:
        args += ["--server", server]
    if backend == "sqlite":
        path: Path = tmp_path_factory.mktemp("fhir") / "fhir.sqlite3"
        sqlite_backend.seed_file(path, 50)
        args += ["--db-path", str(path)]
    with ServerProcess(args) as running:
        yield running, backend


def get(server: ServerProcess, path: str, **options: Any) -> httpx.Response:
    response = httpx.get(server.url + path, timeout=10, **options)
    assert response.headers["content-type"] == "application/fhir+json; fhirVersion=4.0"
    validate(response.content)
    return response


def test_read_search_and_everything_over_http(running: tuple[ServerProcess, str]) -> None:
    """Each route answers 200 with valid FHIR holding the backend's records; full URLs and
    the self link use the address the client called."""
    server, _ = running
    base = f"{server.url}/fhir"
    read = get(server, "/fhir/Patient/P00042")
    assert read.status_code == 200
    assert read.json() == json.loads(resources.encode_patient(synthetic_patient("P00042")))
    search = get(server, "/fhir/Patient", params={"_id": "P00001,P00049,P12345"})
    bundle = search.json()
    assert [entry["resource"]["id"] for entry in bundle["entry"]] == ["P00001", "P00049", "P12345"]
    assert bundle["link"][0]["url"] == f"{base}/Patient?_id=P00001,P00049,P12345"
    everything = get(server, "/fhir/Patient/P00007/$everything")
    expected = resources.encode_everything(
        synthetic_clinical("P00007"), base, f"{base}/Patient/P00007/$everything"
    )
    assert everything.json() == json.loads(expected)
    assert get(server, "/fhir/metadata").json()["resourceType"] == "CapabilityStatement"


def test_errors_over_http(running: tuple[ServerProcess, str]) -> None:
    """Errors are OperationOutcomes with their status: an invalid id 400, an unknown FHIR path
    404, another method 405; an unseeded id is 404 on SQLite and absent from its search."""
    server, backend = running
    assert get(server, "/fhir/Patient/not%20valid").status_code == 400
    assert get(server, "/fhir/Encounter/1").status_code == 404
    deleted = httpx.delete(server.url + "/fhir/Patient/P00001", timeout=10)
    assert deleted.status_code == 405 and deleted.headers["allow"] == "GET"
    validate(deleted.content)
    if backend == "sqlite":
        assert get(server, "/fhir/Patient/P99999/$everything").status_code == 404
        bundle = get(server, "/fhir/Patient", params={"_id": "P99999,P00002"}).json()
        assert [entry["resource"]["id"] for entry in bundle["entry"]] == ["P00002"]
    metrics = httpx.get(server.url + "/metrics", timeout=10).json()
    assert metrics["invalid_requests"] >= 1
