"""The JSON /metrics document a real app serves has the shape MetricsDocument promises."""

from __future__ import annotations

import httpx
import msgspec
import pytest

from carebench.backends.base import BackendHealth, BackendStats
from carebench.backends.simulator import SimulatedBackend, SimulatorConfig
from carebench.metrics.document import MetricsDocument
from carebench.patterns.base import PatternConfig, create_pattern
from carebench.resilience.config import ResilienceConfig, wrap_backend
from carebench.server.app import CareBenchApp

INSTANT = SimulatorConfig(min_latency=0.0, max_latency=0.0, error_rate=0.0, seed=1)


@pytest.mark.parametrize(
    "resilience",
    [ResilienceConfig(), ResilienceConfig(retries=2, circuit_breaker=True)],
    ids=["plain", "retries-and-breaker"],
)
async def test_served_metrics_decode_as_metrics_document(resilience: ResilienceConfig) -> None:
    """GET /metrics after a request decodes as MetricsDocument, resilience sections included."""
    backend = wrap_backend(SimulatedBackend(INSTANT), resilience)
    app = CareBenchApp(create_pattern("optimized", backend, PatternConfig()), backend)
    await app.startup()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            assert (await client.get("/api/v1/patients", params={"id": "P1"})).status_code == 200
            body = (await client.get("/metrics")).content
    finally:
        await app.shutdown()
    document = msgspec.json.decode(body, type=MetricsDocument)
    assert document["total_requests"] == document["success_requests"] == 1
    assert document["pattern_state"]["name"] == "optimized"
    assert document["backend"]["total_queries"] == 1
    assert ("circuit_breaker" in document["backend"]) is resilience.circuit_breaker
    msgspec.convert(backend.stats(), BackendStats)
    msgspec.convert(backend.health(), BackendHealth)
