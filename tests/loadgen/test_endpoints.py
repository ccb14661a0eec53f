"""`carebench loadtest --endpoint`: the path each request asks for over HTTP, the lookup it
makes in process, and a live run against the FHIR routes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from carebench.backends import sqlite as sqlite_backend
from carebench.errors import ConfigError
from carebench.loadgen.channels import HttpChannel, InProcessChannel
from carebench.loadgen.config import LoadConfig
from carebench.loadgen.endpoints import ENDPOINTS
from carebench.models import ClinicalRecord, Patient
from carebench.patterns.base import PatternConfig, create_pattern
from carebench.server.process import ServerProcess
from tests.fakes import GatedBackend
from tests.loadgen.test_channels import answer, scripted_server

PATHS = {
    "legacy": b"/api/v1/patients?id=P7",
    "fhir-read": b"/fhir/Patient/P7",
    "fhir-search": b"/fhir/Patient?_id=P7",
    "fhir-everything": b"/fhir/Patient/P7/$everything",
}


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
async def test_each_endpoint_asks_for_its_path(endpoint: str) -> None:
    """Each endpoint's request line, from the cached request and with a priority header; the
    base path of the target comes first."""
    requests: list[bytes] = []
    async with scripted_server([answer(200)] * 3, requests) as port:
        channel = HttpChannel("127.0.0.1", port, "/base", endpoint)
        assert [await channel.fetch("P7"), await channel.fetch("P7")] == [200, 200]
        assert await channel.fetch("P7", "batch") == 200
        channel.close()
    lines = [request.split(b"\r\n")[0] for request in requests]
    assert lines == [b"GET /base" + PATHS[endpoint] + b" HTTP/1.1"] * 3
    assert b"X-Request-Priority: batch" in requests[2]


class LookupRecordingBackend(GatedBackend):
    """Records which lookup each query made."""

    def __init__(self) -> None:
        super().__init__(open_gate=True)
        self.lookups: list[str] = []

    async def get_patient(self, patient_id: str, deadline: float | None = None) -> Patient:
        self.lookups.append("read")
        return await super().get_patient(patient_id, deadline)

    async def get_patients(
        self, patient_ids: Sequence[str], deadline: float | None = None
    ) -> tuple[Patient, ...]:
        self.lookups.append(f"search {','.join(patient_ids)}")
        return await super().get_patients(patient_ids, deadline)

    async def get_clinical_record(
        self, patient_id: str, deadline: float | None = None
    ) -> ClinicalRecord:
        self.lookups.append("everything")
        return await super().get_clinical_record(patient_id, deadline)


@pytest.mark.parametrize(
    ("endpoint", "lookup"),
    [
        ("legacy", "read"),
        ("fhir-read", "read"),
        ("fhir-search", "search P7"),
        ("fhir-everything", "everything"),
    ],
)
async def test_in_process_channel_makes_the_endpoints_lookup(endpoint: str, lookup: str) -> None:
    """--mode inprocess: each request makes its endpoint's one backend lookup and is 200."""
    backend = LookupRecordingBackend()
    pattern = create_pattern("workerpool", backend, PatternConfig())
    await pattern.start()
    channel = InProcessChannel(pattern, {"standard": 5.0}, endpoint)
    assert await channel.fetch("P7") == 200
    await pattern.shutdown(1.0)
    # First the endpoint's lookup (the fake then answers it through its get_patient).
    assert backend.lookups[0] == lookup


def test_unknown_endpoint_is_a_config_error_with_a_suggestion() -> None:
    """--endpoint fhir-reed: the error names the flag and the closest endpoint."""
    with pytest.raises(ConfigError, match=r"--endpoint.*fhir-read"):
        LoadConfig(endpoint="fhir-reed")


@pytest.mark.slow
def test_loadtest_drives_the_fhir_search_over_http(tmp_path: Path) -> None:
    """A live loadtest against SQLite: searching an id that is not seeded answers 200 (an
    empty Bundle) where the legacy endpoint answers 404, so the FHIR route was driven."""
    path = tmp_path / "load.sqlite3"
    sqlite_backend.seed_file(path, 10)
    args = ["--backend", "sqlite", "--db-path", str(path), "--error-rate", "0", "--quiet"]
    statuses = {}
    with ServerProcess(args) as server:
        for endpoint in ("fhir-search", "legacy"):
            command = [
                sys.executable,
                "-m",
                "carebench",
                "loadtest",
                "--target",
                server.url,
                "--endpoint",
                endpoint,
                "--ids",
                "fixed:P99999",
                "--requests",
                "40",
                "--concurrency",
                "4",
                "--json",
            ]
            run = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
            (result,) = json.loads(run.stdout)
            statuses[endpoint] = result["status_codes"]
    assert statuses == {"fhir-search": {"200": 40}, "legacy": {"404": 40}}
