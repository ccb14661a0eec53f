"""The PostgreSQL backend against a real server (tests/conftest.py starts one per session)."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from carebench.backends.config import BackendConfig
from carebench.backends.dataset import seeded_ids
from carebench.backends.postgres import PostgresBackend
from carebench.backends.records import synthetic_patient
from carebench.backends.simulator import SimulatorConfig
from carebench.errors import BackendError, DeadlineExceeded, PatientNotFound
from carebench.patterns.base import within_deadline
from tests.backends.pg_activity import observer, scratch_database, wait_for
from tests.conftest import POSTGRES_PATIENTS

pytestmark = pytest.mark.postgres
BackendFactory = Callable[..., Awaitable[PostgresBackend]]


def database(**settings: float | int) -> SimulatorConfig:
    """Database settings as create_backend passes them: resolved, nothing injected unless set."""
    return SimulatorConfig(**settings).resolved(real=True)  # type: ignore[arg-type]


def fixed(*seconds: float) -> Callable[[], float]:
    """Injected pg_sleep seconds per query, in order; the last one repeats."""
    values = itertools.chain(seconds, itertools.repeat(seconds[-1]))
    return lambda: next(values)


@pytest.fixture
async def backends(postgres_dsn: str) -> AsyncIterator[BackendFactory]:
    """Builds started backends on the session's database; closes them all afterwards."""
    started: list[PostgresBackend] = []

    async def build(
        config: SimulatorConfig | None = None, pause: Callable[[], float] | None = None
    ) -> PostgresBackend:
        backend = PostgresBackend(postgres_dsn, config or database(pool_size=2), pause)
        await backend.start()
        started.append(backend)
        return backend

    yield build
    for backend in started:
        await backend.close()


async def test_seed_is_idempotent_and_matches_the_simulator(postgres_dsn: str) -> None:
    """Seeding twice loads nothing twice; every record read back equals synthetic_patient."""
    async with scratch_database(postgres_dsn) as dsn:
        config = BackendConfig("postgres", dsn)
        assert await PostgresBackend.seed(config, 40) == 41
        async with observer(dsn) as admin:
            counts = [await admin.fetchval(f"SELECT count(*) FROM {t}") for t in TABLES]
            assert await PostgresBackend.seed(config, 40) == 41
            assert [await admin.fetchval(f"SELECT count(*) FROM {t}") for t in TABLES] == counts
            ids = seeded_ids(40)
            expected = [synthetic_patient(i) for i in ids]
            assert counts[1:] == [
                sum(len(p.diagnosis_codes) for p in expected),
                sum(len(p.medications) for p in expected),
                sum(len(p.allergies) for p in expected),
            ]
        backend = PostgresBackend(dsn, database(pool_size=2))
        await backend.start()
        try:
            assert [await backend.get_patient(i) for i in ids] == expected
        finally:
            await backend.close()


TABLES = ("patients", "diagnoses", "medications", "allergies")


async def test_unknown_id_is_not_found(backends: BackendFactory) -> None:
    """An id that was never seeded is PatientNotFound (a 404), not a database error."""
    backend = await backends()
    with pytest.raises(PatientNotFound):
        await backend.get_patient(f"P{POSTGRES_PATIENTS + 1:05d}")
    assert backend.stats()["total_errors"] == 0
    assert backend.health()["status"] == "healthy"


async def test_injected_latency_holds_real_connections(
    backends: BackendFactory, postgres_dsn: str
) -> None:
    """Injected latency is pg_sleep inside the query: while it runs, the server shows the
    pool's connections active and sleeping, and the answer comes after it."""
    backend = await backends(database(pool_size=2, min_latency=0.4, max_latency=0.4))
    async with observer(postgres_dsn) as admin:
        started = time.perf_counter()
        queries = [asyncio.create_task(backend.get_patient(i)) for i in ("P00001", "P00002")]
        seen = await wait_for(admin, lambda a: a.sleeping == 2)
        patients = await asyncio.gather(*queries)
    assert time.perf_counter() - started >= 0.4
    assert seen.active == seen.connections == 2
    assert patients == [synthetic_patient("P00001"), synthetic_patient("P00002")]


async def test_pool_exhaustion_is_a_backend_error(
    backends: BackendFactory, postgres_dsn: str
) -> None:
    """With every connection busy past --db-pool-timeout, a query fails with the simulator's
    wording, and the pool counts it."""
    backend = await backends(database(pool_size=1, pool_timeout=0.2), pause=fixed(5.0))
    busy = asyncio.create_task(backend.get_patient("P00001"))
    async with observer(postgres_dsn) as admin:
        await wait_for(admin, lambda a: a.sleeping == 1)
    with pytest.raises(BackendError, match=r"^connection pool exhausted \(waited 0.2s for one "):
        await backend.get_patient("P00002")
    busy.cancel()
    with pytest.raises(asyncio.CancelledError):
        await busy
    assert backend.stats()["pool_exhausted"] == 1
    assert backend.stats().get("pool_size") == 1


async def test_deadline_cancels_the_statement_on_the_server(
    backends: BackendFactory, postgres_dsn: str
) -> None:
    """A query cut off by its deadline stops running on the server at once, and its
    connection goes back to the pool usable (the same server process answers next)."""
    backend = await backends(database(pool_size=1), pause=fixed(30.0, 0.0))
    async with observer(postgres_dsn) as admin:
        before = await wait_for(admin, lambda a: a.connections == 1)
        loop = asyncio.get_running_loop()
        with pytest.raises(DeadlineExceeded):
            await within_deadline(backend.get_patient("P00003"), loop.time() + 0.3)
        cancelled_at = time.monotonic()
        after = await wait_for(admin, lambda a: a.active == 0, within=5.0)
        gone_after = time.monotonic() - cancelled_at
        assert await backend.get_patient("P00004") == synthetic_patient("P00004")
    assert gone_after < 2.0, f"the statement ran on for {gone_after:.2f}s"
    assert after.pids == before.pids
    assert backend.stats()["total_errors"] == 0


async def test_injected_errors(backends: BackendFactory) -> None:
    """--error-rate 1 fails every query with the injected error, counted as errors."""
    backend = await backends(database(pool_size=1, error_rate=1.0))
    for _ in range(3):
        with pytest.raises(BackendError, match=r"^injected database error$"):
            await backend.get_patient("P00001")
    assert backend.stats()["total_errors"] == 3
    assert backend.health()["status"] == "healthy"


async def test_injected_errors_follow_the_seed(backends: BackendFactory) -> None:
    """The same --seed fails the same queries."""

    async def outcomes() -> list[bool]:
        backend = await backends(database(pool_size=1, error_rate=0.5, seed=7))
        results = []
        for _ in range(20):
            try:
                await backend.get_patient("P00001")
                results.append(True)
            except BackendError:
                results.append(False)
        return results

    first, second = await outcomes(), await outcomes()
    assert first == second
    assert 0 < first.count(False) < 20
