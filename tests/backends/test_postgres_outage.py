"""The database going away under load, and coming back: a real PostgreSQL is stopped
(pg_ctl stop -m immediate, like a crash) and started again while carebench serves."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest

from carebench.backends.pgcluster import LocalCluster
from carebench.backends.postgres import PostgresBackend
from carebench.backends.records import synthetic_patient
from carebench.backends.simulator import SimulatorConfig
from carebench.errors import BackendError
from carebench.server.process import ServerProcess
from tests.conftest import remove_cluster, start_cluster

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
RECOVERY_TIMEOUT = 20.0


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[LocalCluster]:
    """A cluster of this module's own: stopping it must not disturb the session's."""
    cluster = start_cluster("carebench-pg-outage-", 50)
    yield cluster
    remove_cluster(cluster)


@pytest.fixture
def restarting(own_cluster: LocalCluster) -> Iterator[LocalCluster]:
    """The module's cluster, running again after the test whatever the test did to it."""
    own_cluster.start()
    yield own_cluster
    own_cluster.start()


async def test_backend_reports_down_then_recovers(restarting: LocalCluster) -> None:
    """While the server is gone each query is a BackendError and health says down; once it
    is back the pool reconnects by itself."""
    database = SimulatorConfig(pool_size=3).resolved(real=True)
    backend = PostgresBackend(restarting.dsn(), database)
    await backend.start()
    try:
        assert await backend.get_patient("P00001") == synthetic_patient("P00001")
        restarting.stop("immediate")
        for _ in range(4):
            with pytest.raises(BackendError, match=r"^database unreachable: "):
                await backend.get_patient("P00001")
        assert backend.health()["status"] == "down"
        assert backend.stats()["total_errors"] == 4
        restarting.start()
        assert await backend.get_patient("P00002") == synthetic_patient("P00002")
        assert backend.health()["status"] == "healthy"
    finally:
        await backend.close()


async def statuses(client: httpx.AsyncClient, count: int) -> list[int]:
    """Status codes of `count` concurrent requests."""
    responses = await asyncio.gather(
        *(client.get(f"/api/v1/patients?id=P{i % 50:05d}") for i in range(count))
    )
    return [response.status_code for response in responses]


async def wait_until_served(client: httpx.AsyncClient) -> float:
    """Seconds until a request succeeds again (polling, bounded by RECOVERY_TIMEOUT)."""
    started = time.monotonic()
    while time.monotonic() - started < RECOVERY_TIMEOUT:
        if (await client.get("/api/v1/patients?id=P00007")).status_code == 200:
            return time.monotonic() - started
        await asyncio.sleep(0.05)
    raise AssertionError(f"no successful request {RECOVERY_TIMEOUT:g}s after the restart")


@pytest.mark.parametrize(
    ("flags", "failures"),
    [
        ([], {500}),
        (["--circuit-breaker", "--breaker-threshold", "3", "--breaker-reset", "0.5"], {500, 503}),
    ],
    ids=["plain", "circuit-breaker"],
)
async def test_server_survives_the_database_going_away(
    restarting: LocalCluster, flags: list[str], failures: set[int]
) -> None:
    """Requests fail with 500 (503 once a circuit breaker opens) while the database is
    down; /health answers and reports the backend down; /metrics answers; after a restart
    requests succeed again without restarting carebench."""
    args = ["--backend", "postgres", "--dsn", restarting.dsn(), "--db-pool-size", "4"]
    with ServerProcess([*args, "--quiet", *flags]) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=15) as client:
            assert await statuses(client, 20) == [200] * 20
            restarting.stop("immediate")
            during = await statuses(client, 20) + await statuses(client, 20)
            health = (await client.get("/health")).json()
            metrics = await client.get("/metrics")
            restarting.start()
            recovered_after = await wait_until_served(client)
            after = await statuses(client, 20)
            health_after = (await client.get("/health")).json()
    assert set(during) == failures, during
    assert health["status"] == "degraded" and health["backend"]["status"] == "down"
    assert metrics.status_code == 200 and metrics.json()["backend"]["total_errors"] > 0
    assert after == [200] * 20, f"recovered after {recovered_after:.2f}s, then {after}"
    assert health_after["backend"]["status"] == "healthy"
