"""The orchestrator's probes: GET /health/live and GET /health/ready.

In process, every response goes through the OpenAPI conformance hook (tests/contract.py), so
each status and body below is also checked against the served document. One test runs a real
`carebench serve` through a --faults outage: unready during it, ready after it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from carebench.backends.simulator import SimulatorConfig
from carebench.faults.config import FaultConfig
from carebench.loop_clock import ManualLoopClock
from carebench.patterns.base import PatternConfig, create_pattern
from carebench.server import openapi
from carebench.server.app import CareBenchApp
from carebench.server.process import ServerProcess
from carebench.server.setup import ServerSetup
from tests.contract import ConformanceHook, document_for
from tests.fakes import GatedBackend

LIVE, READY = openapi.LIVE_PATH, openapi.READY_PATH


def build_app(backend: Any = None) -> CareBenchApp:
    backend = backend or GatedBackend(open_gate=True)
    pattern = create_pattern("workerpool", backend, PatternConfig(2, 2), ManualLoopClock())
    return CareBenchApp(pattern, backend, drain_timeout=1.0)


@asynccontextmanager
async def client_for(app: CareBenchApp) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process client whose every response must conform to the app's document."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://testserver",
        event_hooks={"response": [ConformanceHook(document_for(app._routes))]},
    ) as client:
        yield client


async def probe(client: httpx.AsyncClient, path: str) -> tuple[int, dict[str, Any]]:
    response = await client.get(path)
    body: dict[str, Any] = response.json()
    return response.status_code, body


async def test_ready_only_between_startup_and_drain() -> None:
    """503 `starting` before start-up, 200 `ready` once started, 503 `draining` from the
    signal (begin_drain) on; live answers 200 throughout."""
    app = build_app()
    seen: list[tuple[tuple[int, dict[str, Any]], int]] = []
    async with client_for(app) as client:
        seen.append((await probe(client, READY), (await probe(client, LIVE))[0]))
        await app.startup()
        seen.append((await probe(client, READY), (await probe(client, LIVE))[0]))
        app.begin_drain()
        seen.append((await probe(client, READY), (await probe(client, LIVE))[0]))
        await app.shutdown()
    statuses = [(status, body["status"], live) for (status, body), live in seen]
    assert statuses == [(503, "starting", 200), (200, "ready", 200), (503, "draining", 200)]
    assert seen[1][0][1] == {"status": "ready", "pattern": "workerpool", "backend": "healthy"}


async def test_shutdown_without_a_signal_is_draining() -> None:
    """A server that stops the app without a signal handler (granian) still turns unready
    while the pattern drains."""
    app = build_app()
    await app.startup()
    await app.shutdown()
    assert app.readiness()["status"] == "draining"


async def test_outage_makes_unready_and_shows_in_prometheus() -> None:
    """During a --faults outage the backend is down: ready is 503 `backend_down`, live and
    /health stay 200, and the exposition says carebench_backend_up 0 with the outage active."""
    setup = ServerSetup(database=SimulatorConfig(0.0, 0.0), faults=FaultConfig("at 0s outage"))
    app = build_app(setup.build_backend())
    await app.startup()
    try:
        async with client_for(app) as client:
            ready = await probe(client, READY)
            live = await probe(client, LIVE)
            health = await client.get("/health")
            text = (await client.get("/metrics?format=prometheus")).text
    finally:
        await app.shutdown()
    assert ready == (503, {"status": "backend_down", "pattern": "workerpool", "backend": "down"})
    assert live[0] == 200 and live[1]["status"] == "live"
    assert health.status_code == 200
    samples = {
        (s.name, s.labels.get("kind")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("carebench_backend_up", None)] == 0
    assert samples[("carebench_fault_active", "outage")] == 1


async def test_degraded_backend_stays_ready() -> None:
    """A slow database degrades /health but keeps the server ready (the pattern sheds)."""
    setup = ServerSetup(database=SimulatorConfig(0.0, 0.0), faults=FaultConfig("at 0s slow x5"))
    app = build_app(setup.build_backend())
    await app.startup()
    try:
        async with client_for(app) as client:
            status, body = await probe(client, READY)
            health = (await client.get("/health")).json()
    finally:
        await app.shutdown()
    assert (status, body["status"], body["backend"]) == (200, "ready", "degraded")
    assert health["status"] == "degraded"


async def test_index_and_document_list_the_probes() -> None:
    """GET / gives a curl for both probes, and the OpenAPI document describes both."""
    app = build_app()
    async with client_for(app) as client:
        endpoints = (await client.get("/")).json()["endpoints"]
    assert {f"GET {LIVE}", f"GET {READY}"} <= set(endpoints)
    assert {LIVE, READY} <= set(document_for(app._routes)["paths"])


@pytest.mark.slow
def test_real_server_unready_during_outage_then_ready() -> None:
    """A live server with a 3 s outage from start answers ready 503 during it and 200 after,
    within a bounded wait; live is 200 all along."""
    faults = ["--faults", "at 0s outage for 3s", "--quiet"]
    with ServerProcess(faults) as server, httpx.Client(base_url=server.url, timeout=5) as client:
        first = client.get(READY)
        assert client.get(LIVE).status_code == 200
        deadline = time.monotonic() + 15
        ready = first
        while ready.status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)  # polling for the end of the outage
            ready = client.get(READY)
        assert client.get(LIVE).status_code == 200
    assert (first.status_code, first.json()["status"]) == (503, "backend_down")
    assert (ready.status_code, ready.json()["status"]) == (200, "ready")
