"""PostgreSQL through asyncpg: exactly `--db-pool-size` connections, one round trip per patient.

The pool opens all of its connections at start (min = max), so the number PostgreSQL sees in
`pg_stat_activity` is the configured one. Waiting for a free connection is bounded by
`--db-pool-timeout`, then fails with the simulator's "connection pool exhausted". Injected
latency is `pg_sleep` inside the query, so a slow query holds a real connection and a real
server process, as a slow real query would.

A query cancelled by its request's deadline is cancelled on the server too: asyncpg sends a
CancelRequest when the task awaiting a statement is cancelled, and the pool waits for the
server to confirm before handing the connection out again.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Iterator, Sequence
from itertools import islice
from typing import TYPE_CHECKING, Any

from carebench.errors import BackendError, BackendUnavailable, ConfigError, PatientNotFound

try:
    import asyncpg
except ImportError as missing:  # pragma: no cover - depends on the environment
    raise ConfigError(
        "--backend postgres needs asyncpg: pip install 'carebench[postgres]'"
    ) from missing

from carebench.backends.base import BackendHealth, BackendStats
from carebench.backends.dataset import (
    DETAIL_TABLES,
    LIST_TABLES,
    PATIENT_COLUMNS,
    SCHEMA,
    PatientRows,
    clinical_from_row,
    detail_source,
    patient_from_row,
    seed_rows,
)
from carebench.backends.pgdiagnosis import (
    CONNECT_TIMEOUT,
    CONNECTION_FAILURES,
    check_seeded,
    connect_options,
    require_dsn,
    unavailable,
)
from carebench.backends.pool import pool_stats, wait_for_connection
from carebench.models import ClinicalRecord, Patient

if TYPE_CHECKING:
    from carebench.backends.config import BackendConfig
    from carebench.backends.simulator import SimulatorConfig

#: pool.close() waits for connections in use; past this it terminates them.
CLOSE_TIMEOUT = 10.0
#: Patients per COPY batch when seeding.
SEED_BATCH = 5000


def patient_query(injected_latency: bool) -> str:
    """The one statement that reads a patient and its ordered lists (`$1` the id; with
    injected latency, `$2` the seconds `pg_sleep` holds the connection first)."""
    columns = ", ".join(f"p.{column}" for column in PATIENT_COLUMNS)
    lists = ", ".join(
        f"ARRAY(SELECT {value} FROM {table} WHERE patient_id = p.id ORDER BY position)"
        for table, value in LIST_TABLES.items()
    )
    return _statement(f"{columns}, {lists}", "p.id = $1", injected_latency)


def search_query(injected_latency: bool) -> str:
    """`patient_query` for every id in the text array `$1` at once."""
    return patient_query(injected_latency).replace("p.id = $1", "p.id = ANY($1::text[])")


def clinical_query(injected_latency: bool) -> str:
    """The patients row and, per list table, its rows with their detail as a JSON array text
    (`$1` the id, `$2` the injected latency as in `patient_query`)."""
    columns = ", ".join(f"p.{column}" for column in PATIENT_COLUMNS)
    details = []
    for table in LIST_TABLES:
        values, source = detail_source(table)
        rows = f"json_agg(json_build_array({', '.join(values)}) ORDER BY l.position)"
        details.append(f"(SELECT {rows} FROM {source})::text")
    return _statement(f"{columns}, {', '.join(details)}", "p.id = $1", injected_latency)


def _statement(columns: str, where: str, injected_latency: bool) -> str:
    source = "patients AS p"
    if injected_latency:
        source = f"(SELECT pg_sleep($2)) AS pause, {source}"
    return f"SELECT {columns} FROM {source} WHERE {where}"


class PostgresBackend:
    """Patient records from a PostgreSQL database seeded by `carebench db seed`."""

    name = "postgres"

    def __init__(
        self,
        dsn: str | None,
        config: SimulatorConfig,
        pause: Callable[[], float] | None = None,
    ) -> None:
        """`config` is resolved (floats); `pause` draws each query's injected `pg_sleep`
        seconds (default: uniform over `config.latency_range`; tests pass their own)."""
        self.dsn = dsn
        self.config = config
        self._rng = random.Random(config.seed)
        low, high = config.latency_range
        self._pause = pause or (lambda: self._rng.uniform(low, high))
        self._sleeps = pause is not None or high > 0
        self._query = patient_query(injected_latency=self._sleeps)
        self._search = search_query(injected_latency=self._sleeps)
        self._clinical = clinical_query(injected_latency=self._sleeps)
        self._pool: Any = None
        self._slots = asyncio.Semaphore(config.pool_size)
        self.queries = 0
        self.errors = 0
        self.pool_exhausted = 0
        self.active = 0
        self.peak_active = 0
        self.waiting = 0
        #: Requests in a row that could not reach the database; > 0 means "down".
        self.connection_failures = 0

    @classmethod
    def from_settings(cls, backend: BackendConfig, database: SimulatorConfig) -> PostgresBackend:
        return cls(backend.dsn, database)

    async def start(self) -> None:
        """Open the pool and check the schema is there and seeded; `BackendUnavailable`
        naming the problem and the fix otherwise."""
        dsn = require_dsn(self.dsn)
        size = self.config.pool_size
        try:
            self._pool = await asyncpg.create_pool(
                dsn, min_size=size, max_size=size, reset=_keep_session, **connect_options()
            )
            async with self._pool.acquire() as connection:
                await check_seeded(connection, dsn)
                for statement in (self._query, self._search, self._clinical):
                    await connection.prepare(statement)
        except BackendUnavailable:
            await self.close()
            raise
        except Exception as problem:
            await self.close()
            raise unavailable(problem, dsn, size) from None

    async def close(self) -> None:
        """Close every connection (terminating those still busy after CLOSE_TIMEOUT)."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await pool.close()
        except CONNECTION_FAILURES:  # TimeoutError included (an OSError)
            pool.terminate()

    async def get_patient(self, patient_id: str, deadline: float | None = None) -> Patient:
        """One round trip; `BackendError` when the database fails or the pool stays full,
        `PatientNotFound` for an id that was never seeded."""
        row = await self._run("fetchrow", self._query, patient_id)
        if row is None:
            raise PatientNotFound(patient_id)
        values = tuple(row)
        width = len(PATIENT_COLUMNS)
        return patient_from_row(values[:width], *values[width:])

    async def get_patients(
        self, patient_ids: Sequence[str], deadline: float | None = None
    ) -> tuple[Patient, ...]:
        """One round trip for all of `patient_ids`; unknown ids are left out."""
        rows = await self._run("fetch", self._search, list(patient_ids))
        width = len(PATIENT_COLUMNS)
        found = {row[0]: patient_from_row(tuple(row)[:width], *tuple(row)[width:]) for row in rows}
        return tuple(found[patient_id] for patient_id in patient_ids if patient_id in found)

    async def get_clinical_record(
        self, patient_id: str, deadline: float | None = None
    ) -> ClinicalRecord:
        """One round trip for the patient and its lists' detail rows."""
        row = await self._run("fetchrow", self._clinical, patient_id)
        if row is None:
            raise PatientNotFound(patient_id)
        values = tuple(row)
        width = len(PATIENT_COLUMNS)
        return clinical_from_row(values[:width], *values[width:])

    async def _run(self, method: str, statement: str, key: object) -> Any:
        """`connection.<method>(statement, key)` with the injected latency and error."""
        self.queries += 1
        pause = self._pause()
        error_rate = self.config.error_rate or 0.0
        injected_error = error_rate > 0 and self._rng.random() < error_rate
        result = await self._fetch(method, statement, key, pause)
        if injected_error:
            self.errors += 1
            raise BackendError("injected database error")
        return result

    async def _fetch(self, method: str, statement: str, key: object, pause: float) -> Any:
        if self._pool is None:
            self.errors += 1
            raise BackendError("the postgres backend is not started")
        await self._take_slot()
        self.active += 1
        self.peak_active = max(self.peak_active, self.active)
        try:
            async with self._pool.acquire(timeout=CONNECT_TIMEOUT) as connection:
                args = (key, pause) if self._sleeps else (key,)
                result = await getattr(connection, method)(statement, *args)
        except CONNECTION_FAILURES as lost:
            self.errors += 1
            self.connection_failures += 1
            raise BackendError(f"database unreachable: {_reason(lost)}") from None
        except (asyncpg.PostgresError, asyncpg.InterfaceError) as failed:
            self.errors += 1
            self.connection_failures = 0
            raise BackendError(f"database error: {_reason(failed)}") from None
        finally:
            self.active -= 1
            self._slots.release()
        self.connection_failures = 0
        return result

    async def _take_slot(self) -> None:
        """Wait for one of the pool's connections, at most --db-pool-timeout."""
        await wait_for_connection(
            self._slots, self.config.pool_size, self.config.pool_timeout, self
        )

    def health(self) -> BackendHealth:
        """Status "down" while the latest requests could not reach the database; runs no query."""
        down = self._pool is None or self.connection_failures > 0
        return {
            "status": "down" if down else "healthy",
            "backend": self.name,
            "total_queries": self.queries,
            "total_errors": self.errors,
        }

    def stats(self) -> BackendStats:
        """Counters and pool state for /metrics."""
        return pool_stats(self.name, self, self.config.pool_size)

    @classmethod
    async def seed(cls, backend: BackendConfig, patients: int) -> int:
        """Create the schema and load `patients` synthetic patients (COPY into temporary
        tables, then INSERT ... ON CONFLICT DO NOTHING: running it twice loads nothing
        twice). How many patients the database holds afterwards."""
        dsn = require_dsn(backend.dsn)
        try:
            connection = await asyncpg.connect(dsn, **connect_options())
        except Exception as problem:
            raise unavailable(problem, dsn) from None
        try:
            async with connection.transaction():
                for statement in SCHEMA:
                    await connection.execute(statement)
            batches = _batches(seed_rows(patients), SEED_BATCH)
            for batch in batches:
                async with connection.transaction():
                    await _load(connection, batch)
            await connection.execute("ANALYZE")
            count: int = await connection.fetchval("SELECT count(*) FROM patients")
            return count
        finally:
            await connection.close()


def _reason(problem: BaseException) -> str:
    return str(problem) or type(problem).__name__


class OneLineWarning(logging.Filter):
    """asyncpg's pool logs a traceback each time it fails to reconnect while the database is
    away; the server's output gets one line per attempt instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            record.msg = f"{record.getMessage()} ({_reason(record.exc_info[1])})"
            record.args = None
            record.exc_info = None
        return True


logging.getLogger("asyncpg.pool").addFilter(OneLineWarning())


async def _keep_session(connection: Any) -> None:
    """The pool's reset between uses: nothing. Our sessions only run read-only prepared
    statements, and asyncpg's default reset would cost a round trip per query."""


def _batches(rows: Iterator[PatientRows], size: int) -> Iterator[list[PatientRows]]:
    while batch := list(islice(rows, size)):
        yield batch


async def _load(connection: Any, batch: list[PatientRows]) -> None:
    """Copy one batch into session-local staging tables, then insert what is missing."""
    tables: dict[str, list[tuple[Any, ...]]] = {
        "patients": [rows.patient for rows in batch],
        "diagnoses": [row for rows in batch for row in rows.diagnoses],
        "medications": [row for rows in batch for row in rows.medications],
        "allergies": [row for rows in batch for row in rows.allergies],
    }
    # After the lists their foreign keys point to; PatientRows names them after their tables.
    for detail, _ in DETAIL_TABLES.values():
        tables[detail] = [row for rows in batch for row in getattr(rows, detail)]
    for table, records in tables.items():
        staged = f"staged_{table}"
        await connection.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {staged} (LIKE {table}) ON COMMIT DELETE ROWS"
        )
        await connection.copy_records_to_table(staged, records=records)
        await connection.execute(
            f"INSERT INTO {table} SELECT * FROM {staged} ON CONFLICT DO NOTHING"
        )
