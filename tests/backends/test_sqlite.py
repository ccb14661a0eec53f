"""The SQLite backend against real files: seeding, records, pool, injected faults, deadlines."""

from __future__ import annotations

import asyncio
import logging
import random
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest

from carebench.backends import dataset
from carebench.backends import sqlite as sqlite_backend
from carebench.backends.config import BackendConfig
from carebench.backends.records import synthetic_clinical, synthetic_patient
from carebench.backends.simulator import SimulatedBackend, SimulatorConfig
from carebench.backends.sqlite import SqliteBackend, default_db_path
from carebench.errors import BackendError, BackendUnavailable, PatientNotFound
from carebench.patterns.base import PatternConfig, create_pattern
from carebench.server.app import CareBenchApp
from carebench.server.process import ServerProcess

SEEDED = 1000
#: A statement that runs for minutes unless SQLite interrupts it.
SPIN_QUERY = (
    "WITH RECURSIVE spin(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM spin WHERE i < 1000000000) "
    "SELECT count(*) FROM spin WHERE ? IS NOT NULL"
)


@pytest.fixture(scope="module")
def seeded_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A file seeded with SEEDED patients, shared by the tests that only read it."""
    path = tmp_path_factory.mktemp("sqlite") / "seeded.sqlite3"
    sqlite_backend.seed_file(path, SEEDED)
    return path


@pytest.fixture
async def make_backend(seeded_file: Path) -> AsyncIterator[Callable[..., Any]]:
    """Builds started backends on the seeded file (settings as SimulatorConfig keywords)."""
    started: list[SqliteBackend] = []

    async def factory(**settings: Any) -> SqliteBackend:
        backend = SqliteBackend(seeded_file, SimulatorConfig(**settings))
        await backend.start()
        started.append(backend)
        return backend

    yield factory
    for backend in started:
        await backend.close()


def dump(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, sorted."""
    with closing(sqlite3.connect(path)) as db:
        return {
            table: sorted(db.execute(f"SELECT * FROM {table}"))
            for table in ("patients", *dataset.LIST_TABLES)
        }


async def wait_until(predicate: Callable[[], bool], what: str, seconds: float = 10.0) -> None:
    """Poll until `predicate()` holds (work finishing in another thread), failing after a
    generous bound."""
    give_up = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > give_up:
            raise AssertionError(f"never reached: {what}")
        await asyncio.sleep(0.005)


async def test_seeding_is_deterministic_and_idempotent(tmp_path: Path) -> None:
    """Seeding twice keeps the same rows; another file seeded alike holds identical rows."""
    first, other = tmp_path / "a.sqlite3", tmp_path / "b.sqlite3"
    config = BackendConfig("sqlite", db_path=str(first))
    assert await SqliteBackend.seed(config, 200) == 201  # P00000..P00199 and P12345
    rows = dump(first)
    assert await SqliteBackend.seed(config, 200) == 201
    assert dump(first) == rows
    assert sqlite_backend.seed_file(other, 200) == 201
    assert dump(other) == rows
    assert sum(len(table) for table in rows.values()) > 201 * 2


async def test_seeding_more_adds_only_the_new_patients(tmp_path: Path) -> None:
    """A larger --patients on a seeded file adds the missing ids and keeps the others."""
    path = tmp_path / "grow.sqlite3"
    sqlite_backend.seed_file(path, 50)
    assert sqlite_backend.seed_file(path, 80) == 81
    assert sqlite_backend.count_patients(path) == 81


def test_seeded_file_is_in_wal_mode(seeded_file: Path) -> None:
    """Seeding switches the file to WAL, so readers never block each other."""
    with closing(sqlite3.connect(seeded_file)) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_records_equal_synthetic_patients(make_backend: Any) -> None:
    """A sample of seeded ids, and P12345, read back equal to synthetic_patient field for
    field, lists in order."""
    backend = await make_backend(pool_size=4)
    ids = [*random.Random(9).sample(dataset.seeded_ids(SEEDED), 200), "P12345"]
    patients = await asyncio.gather(*(backend.get_patient(i) for i in ids))
    assert list(patients) == [synthetic_patient(i) for i in ids]
    assert any(len(p.diagnosis_codes) > 1 and p.medications and p.allergies for p in patients)


async def test_unknown_id_is_not_found_and_not_an_error(make_backend: Any) -> None:
    """An id that was never seeded raises PatientNotFound; the database did not fail."""
    backend = await make_backend()
    with pytest.raises(PatientNotFound):
        await backend.get_patient("P99999")
    stats = backend.stats()
    assert stats["total_queries"] == 1 and stats["total_errors"] == 0
    assert stats["active_queries"] == 0


@pytest.mark.slow
async def test_injected_latency_is_at_least_the_minimum(make_backend: Any) -> None:
    """--min-latency adds at least that much to a real query (real time)."""
    backend = await make_backend(min_latency=0.2, max_latency=0.25)
    started = time.monotonic()
    patient = await backend.get_patient("P00007")
    assert time.monotonic() - started >= 0.2
    assert patient == synthetic_patient("P00007")


async def test_error_rate_one_fails_every_query(make_backend: Any) -> None:
    """--error-rate 1 injects a BackendError into each query, counted as an error."""
    backend = await make_backend(error_rate=1.0)
    for _ in range(3):
        with pytest.raises(BackendError, match="injected database error"):
            await backend.get_patient("P00001")
    assert backend.stats()["total_errors"] == 3
    assert backend.stats()["active_queries"] == 0


async def test_injected_errors_follow_the_seed(make_backend: Any) -> None:
    """The same --seed injects failures into the same queries."""

    async def outcomes() -> list[bool]:
        backend = await make_backend(error_rate=0.5, seed=7)
        failed = []
        for _ in range(20):
            try:
                await backend.get_patient("P00001")
            except BackendError:
                failed.append(True)
            else:
                failed.append(False)
        return failed

    first = await outcomes()
    assert first == await outcomes()
    assert 0 < sum(first) < 20


async def test_pool_exhausted_when_the_only_connection_is_held(make_backend: Any) -> None:
    """With one connection held by a slow query, the next waits --db-pool-timeout and fails
    with the simulator's message; the pool's state shows in stats()."""
    backend = await make_backend(pool_size=1, pool_timeout=0.05, min_latency=60, max_latency=60)
    holder = asyncio.create_task(backend.get_patient("P00001"))
    await wait_until(lambda: backend.stats()["active_queries"] == 1, "the connection is held")
    with pytest.raises(BackendError) as failure:
        await backend.get_patient("P00002")
    assert str(failure.value) == "connection pool exhausted (waited 0.05s for one of 1 connections)"
    stats = backend.stats()
    assert stats["pool_exhausted"] == 1 and stats["pool_size"] == 1
    assert stats["peak_active_queries"] == 1 and stats["waiting_for_connection"] == 0
    holder.cancel()
    with pytest.raises(asyncio.CancelledError):
        await holder


@pytest.mark.slow
async def test_deadline_interrupts_the_statement_in_sqlite(
    make_backend: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A statement still running at the deadline is interrupted in SQLite, so the single
    connection is free for the next query long before the statement could have finished."""
    backend = await make_backend(pool_size=1, pool_timeout=10)
    monkeypatch.setattr(sqlite_backend, "PATIENT_QUERY", SPIN_QUERY)
    slow = asyncio.create_task(backend.get_patient("P00001"))
    await wait_until(lambda: backend.stats()["active_queries"] == 1, "the statement runs")
    await asyncio.sleep(0.1)  # let the statement get going in its thread
    slow.cancel()
    with pytest.raises(asyncio.CancelledError):
        await slow
    await wait_until(lambda: backend.stats()["active_queries"] == 0, "the statement stops")
    monkeypatch.undo()
    assert await backend.get_patient("P00002") == synthetic_patient("P00002")
    assert backend.stats()["pool_exhausted"] == 0


@pytest.mark.slow
async def test_deadline_frees_a_connection_held_by_injected_latency(make_backend: Any) -> None:
    """A deadline during injected latency releases the connection at once, not a minute
    later when the sleep would end."""
    backend = await make_backend(pool_size=1, pool_timeout=0.05, min_latency=60, max_latency=60)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1):
            await backend.get_patient("P00001")
    await wait_until(lambda: backend.stats()["active_queries"] == 0, "the connection is free")
    # The next query gets the connection (its own deadline ends it, not the pool timeout).
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):
            await backend.get_patient("P00002")
    assert backend.stats()["pool_exhausted"] == 0


async def test_queries_before_start_fail_cleanly(seeded_file: Path) -> None:
    """A backend that was never started answers with a BackendError, not a hang."""
    backend = SqliteBackend(seeded_file, SimulatorConfig())
    with pytest.raises(BackendError, match="not started"):
        await backend.get_patient("P00001")
    await backend.close()


@pytest.mark.parametrize("state", ["missing", "empty file", "schema only"])
async def test_explicit_unseeded_file_names_the_seed_command(tmp_path: Path, state: str) -> None:
    """An explicit --db-path that is missing or has no patients is BackendUnavailable with
    the command that seeds it; nothing is created."""
    path = tmp_path / "records.sqlite3"
    if state == "empty file":
        path.touch()
    elif state == "schema only":
        with closing(sqlite3.connect(path)) as db:
            for statement in dataset.SCHEMA:
                db.execute(statement)
    backend = SqliteBackend.from_settings(
        BackendConfig("sqlite", db_path=str(path)), SimulatorConfig().resolved(real=True)
    )
    with pytest.raises(BackendUnavailable) as unavailable:
        await backend.start()
    message = str(unavailable.value)
    assert str(path) in message
    assert f"run: carebench db seed --backend sqlite --db-path {path}" in message
    assert path.exists() == (state != "missing")
    await backend.close()


async def test_a_file_that_is_not_sqlite_is_unavailable(tmp_path: Path) -> None:
    """Pointing --db-path at some other file says so, for serve and for seed alike."""
    path = tmp_path / "notes.txt"
    path.write_text("these are not the records you are looking for\n" * 200)
    config = BackendConfig("sqlite", db_path=str(path))
    backend = SqliteBackend.from_settings(config, SimulatorConfig())
    with pytest.raises(BackendUnavailable, match="is not a SQLite database"):
        await backend.start()
    with pytest.raises(BackendUnavailable, match="is not a SQLite database"):
        await SqliteBackend.seed(config, 10)
    assert path.read_text().startswith("these are not")


async def test_default_file_is_seeded_on_first_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Without --db-path, start() creates and seeds the cache file itself (logging, not
    printing), so `serve --backend sqlite` needs no extra step."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(dataset, "DEFAULT_PATIENTS", 40)
    path = tmp_path / "carebench" / "carebench.sqlite3"
    assert default_db_path() == path
    backend = SqliteBackend.from_settings(BackendConfig("sqlite"), SimulatorConfig())
    with caplog.at_level(logging.INFO, logger="carebench.backends.sqlite"):
        await backend.start()
    try:
        assert sqlite_backend.count_patients(path) == 41
        assert await backend.get_patient("P00039") == synthetic_patient("P00039")
        assert await backend.get_patient("P12345") == synthetic_patient("P12345")
    finally:
        await backend.close()
    assert any(str(path) in record.getMessage() for record in caplog.records)


def test_default_path_ignores_a_relative_xdg_cache_home(monkeypatch: pytest.MonkeyPatch) -> None:
    """A relative XDG_CACHE_HOME is invalid by the spec: ~/.cache is used instead."""
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")
    assert default_db_path() == Path.home() / ".cache" / "carebench" / "carebench.sqlite3"


async def test_close_interrupts_running_queries(make_backend: Any) -> None:
    """Closing with a query inside injected latency ends it instead of waiting it out."""
    backend = await make_backend(pool_size=2, min_latency=60, max_latency=60)
    running = asyncio.create_task(backend.get_patient("P00001"))
    await wait_until(lambda: backend.stats()["active_queries"] == 1, "the query runs")
    async with asyncio.timeout(30):
        await backend.close()
    with pytest.raises(BackendError):
        await running


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "carebench", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


async def simulator_body(patient_id: str) -> dict[str, Any]:
    """The patient JSON the simulator's server sends for `patient_id`."""
    backend = SimulatedBackend(SimulatorConfig(min_latency=0, max_latency=0, error_rate=0))
    app = CareBenchApp(create_pattern("naive", backend, PatternConfig()), backend)
    await app.startup()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            response = await client.get("/api/v1/patients", params={"id": patient_id})
    finally:
        await app.shutdown()
    body: dict[str, Any] = response.json()["patient"]
    return body


@pytest.mark.slow
async def test_serve_from_a_seeded_file(tmp_path: Path) -> None:
    """`carebench serve --backend sqlite` answers with the same patient JSON as the
    simulator, and /metrics shows the sqlite pool."""
    path = tmp_path / "served.sqlite3"
    seeded = run_cli(
        "db", "seed", "--backend", "sqlite", "--db-path", str(path), "--patients", "100"
    )
    assert seeded.returncode == 0, seeded.stderr
    assert "101 patients present" in seeded.stdout
    args = ["--backend", "sqlite", "--db-path", str(path), "--db-pool-size", "3", "--quiet"]
    with ServerProcess(args) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            response = await client.get("/api/v1/patients", params={"id": "P00042"})
            missing = await client.get("/api/v1/patients", params={"id": "P99999"})
            metrics = (await client.get("/metrics")).json()
    assert response.status_code == 200
    assert response.json()["patient"] == await simulator_body("P00042")
    assert missing.status_code == 404
    assert "sqlite" in str(metrics)


@pytest.mark.slow
def test_serve_from_an_empty_file_is_one_error_line(tmp_path: Path) -> None:
    """An unseeded --db-path stops serve at start-up: exit 1, one error naming the fix."""
    path = tmp_path / "empty.sqlite3"
    path.touch()
    result = run_cli("serve", "--backend", "sqlite", "--db-path", str(path), "--port", "0")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert f"carebench db seed --backend sqlite --db-path {path}" in lines[0]
    assert "Traceback" not in result.stderr


async def test_file_seeded_before_the_detail_tables_is_completed_by_seeding(
    tmp_path: Path,
) -> None:
    """A file from a carebench without the clinical detail tables counts as unseeded (so the
    default file is seeded again, and another is refused with the seed command); seeding it
    adds the detail rows of the patients already there, and $everything then reads them."""
    path = tmp_path / "old.sqlite3"
    sqlite_backend.seed_file(path, 20)
    with closing(sqlite3.connect(path)) as db, db:
        for detail, _ in dataset.DETAIL_TABLES.values():
            db.execute(f"DROP TABLE {detail}")
    assert sqlite_backend.count_patients(path) == 0
    assert sqlite_backend.seed_file(path, 20) == 21
    backend = SqliteBackend(path, SimulatorConfig(pool_size=1))
    await backend.start()
    try:
        record = await backend.get_clinical_record("P00007")
    finally:
        await backend.close()
    assert record == synthetic_clinical("P00007")
