"""Under load, PostgreSQL itself never sees more carebench connections than --db-pool-size."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from carebench.backends.postgres import PostgresBackend
from carebench.backends.simulator import SimulatorConfig
from carebench.patterns.base import PatternConfig, create_pattern
from carebench.server.app import CareBenchApp
from tests.backends.pg_activity import Activity, activity, observer

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
POOL_SIZE = 5
CLIENTS = 100
REQUESTS_PER_CLIENT = 5


async def sample_until(dsn: str, done: asyncio.Event) -> list[Activity]:
    """pg_stat_activity every few milliseconds until `done`."""
    samples = []
    async with observer(dsn) as admin:
        while not done.is_set():
            samples.append(await activity(admin))
            await asyncio.sleep(0.005)
    return samples


@pytest.mark.parametrize("pattern", ["workerpool", "semaphore"])
async def test_connections_never_exceed_the_pool(postgres_dsn: str, pattern: str) -> None:
    """100 clients through a bounded pattern admitting 20 at a time, --db-pool-size 5: the
    server's own view shows 5 carebench connections at most, all of them busy at the peak."""
    database = SimulatorConfig(pool_size=POOL_SIZE, min_latency=0.01, max_latency=0.01)
    backend = PostgresBackend(postgres_dsn, database.resolved(real=True))
    config = PatternConfig(workers=20, queue_size=CLIENTS * 2, limit=20, max_wait=10.0)
    app = CareBenchApp(create_pattern(pattern, backend, config), backend, request_timeout=20)
    await app.startup()
    done = asyncio.Event()
    sampler = asyncio.create_task(sample_until(postgres_dsn, done))
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:

            async def one_client(index: int) -> list[int]:
                statuses = []
                for _ in range(REQUESTS_PER_CLIENT):
                    response = await client.get(f"/api/v1/patients?id=P{index:05d}")
                    statuses.append(response.status_code)
                return statuses

            results = await asyncio.gather(*(one_client(i) for i in range(CLIENTS)))
    finally:
        done.set()
        samples = await sampler
        await app.shutdown()
    statuses = [status for statuses in results for status in statuses]
    assert statuses == [200] * (CLIENTS * REQUESTS_PER_CLIENT)
    assert len(samples) >= 10
    assert max(sample.connections for sample in samples) == POOL_SIZE
    assert max(sample.active for sample in samples) == POOL_SIZE
    assert backend.stats()["peak_active_queries"] == POOL_SIZE
