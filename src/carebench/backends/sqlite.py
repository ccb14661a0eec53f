"""SQLite: the embedded real database, read through a bounded set of connections.

The file is in WAL mode (set when it is seeded), so readers never block each other. Each of
the `--db-pool-size` read-only connections belongs to one thread of its own: sqlite3 releases
the GIL while a statement runs, and its same-thread check proves no connection is ever shared.
A query waits for a free connection on the event loop (a fair semaphore, as the simulator's
pool), runs in that connection's thread, and holds the connection, with any injected latency,
until the thread is done with it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import shlex
import sqlite3
import threading
from collections.abc import Callable, Coroutine, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing, suppress
from functools import partial
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

import msgspec

from carebench.backends import dataset
from carebench.backends.base import BackendHealth, BackendStats
from carebench.backends.pool import pool_stats, wait_for_connection
from carebench.errors import BackendError, BackendUnavailable, PatientNotFound
from carebench.models import ClinicalRecord, Patient

if TYPE_CHECKING:
    from carebench.backends.config import BackendConfig
    from carebench.backends.simulator import SimulatorConfig

log = logging.getLogger("carebench.backends.sqlite")

K = TypeVar("K")
T = TypeVar("T")
#: A lookup run in a connection's thread: (connection, key) -> answer.
Read = Callable[[sqlite3.Connection, K], T]

#: The argument order of `dataset.patient_from_row`.
_LISTS = ("diagnoses", "medications", "allergies")


def _ordered_list(table: str) -> str:
    column = dataset.LIST_TABLES[table]
    # An ORDER BY subquery is never flattened into an aggregate (SQLite's flattening rule 16),
    # so json_group_array sees the rows by position; ORDER BY inside the aggregate itself
    # needs SQLite 3.44, newer than many Pythons ship.
    return (
        f"(SELECT json_group_array({column}) FROM "
        f"(SELECT {column} FROM {table} WHERE patient_id = p.id ORDER BY position))"
    )


#: One round trip per patient: the patients row, then its lists as JSON arrays.
PATIENT_QUERY = (
    "SELECT "
    + ", ".join(
        [*(f"p.{column}" for column in dataset.PATIENT_COLUMNS), *map(_ordered_list, _LISTS)]
    )
    + " FROM patients AS p WHERE p.id = ?"
)
#: The same columns for several patients at once: `?` is a JSON array of ids.
SEARCH_QUERY = PATIENT_QUERY.replace("p.id = ?", "p.id IN (SELECT value FROM json_each(?))")


def _detail_list(table: str) -> str:
    values, source = dataset.detail_source(table)
    columns = ", ".join(f"{value} AS v{index}" for index, value in enumerate(values))
    rows = ", ".join(f"v{index}" for index in range(len(values)))
    # json_array in the aggregate, not the subquery: a JSON subtype does not cross a subquery.
    return (
        f"(SELECT json_group_array(json_array({rows})) FROM "
        f"(SELECT {columns} FROM {source} ORDER BY l.position))"
    )


#: One round trip for $everything: the patients row, then each list with its detail as JSON.
CLINICAL_QUERY = (
    "SELECT "
    + ", ".join(
        [*(f"p.{column}" for column in dataset.PATIENT_COLUMNS), *map(_detail_list, _LISTS)]
    )
    + " FROM patients AS p WHERE p.id = ?"
)
_LIST_DECODER = msgspec.json.Decoder(list[str])
_IDS_ENCODER = msgspec.json.Encoder()
#: How many SQLite VM steps run between two checks of the cancel flag. The check covers the
#: moment interrupt() cannot: a deadline that passes just before the statement starts.
_PROGRESS_STEPS = 1000
#: Read pages through a shared memory map instead of copying them into a page cache per
#: connection, so a pool of 100 costs one copy of the file, in the OS page cache.
_MMAP_BYTES = 256 * 1024 * 1024
#: How long seeding waits for another process that is seeding the same file.
_SEED_LOCK_TIMEOUT = 60.0
_SEED_BATCH = 2000


def default_db_path() -> Path:
    """carebench.sqlite3 in the user cache directory ($XDG_CACHE_HOME or ~/.cache)."""
    cache = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG spec: an unset, empty or relative value means the default.
    base = Path(cache) if os.path.isabs(cache) else Path.home() / ".cache"
    return base / "carebench" / "carebench.sqlite3"


def _path_of(backend: BackendConfig) -> Path:
    return Path(backend.db_path).expanduser() if backend.db_path else default_db_path()


def _read_only_uri(path: Path) -> str:
    return f"file:{quote(str(path.resolve()))}?mode=ro"


def _seed_command(path: Path) -> str:
    return f"carebench db seed --backend sqlite --db-path {shlex.quote(str(path))}"


def _unusable(path: Path, exc: sqlite3.Error) -> BackendUnavailable:
    if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_NOTADB:
        return BackendUnavailable(
            f"{path} is not a SQLite database; point --db-path at another file "
            "(create one with: carebench db seed --backend sqlite --db-path FILE)"
        )
    return BackendUnavailable(f"cannot open the SQLite database {path}: {exc}")


def count_patients(path: Path) -> int:
    """Patients in the file: 0 when it does not exist or lacks any table of the schema."""
    if not path.exists():
        return 0
    try:
        with closing(sqlite3.connect(_read_only_uri(path), uri=True)) as db:
            tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
            needed = {"patients", *dataset.LIST_TABLES}
            needed.update(detail for detail, _ in dataset.DETAIL_TABLES.values())
            # Seeded before the detail tables existed: seeding again adds them.
            if not needed <= tables:
                return 0
            count: int = db.execute("SELECT count(*) FROM patients").fetchone()[0]
            return count
    except sqlite3.Error as exc:
        raise _unusable(path, exc) from None


def seed_file(path: Path, patients: int) -> int:
    """Create the schema if needed and load `dataset.seed_rows(patients)` in one transaction;
    rows already there are kept (INSERT OR IGNORE), so seeding twice loads nothing twice.
    Returns how many patients the file holds afterwards."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with closing(sqlite3.connect(path, timeout=_SEED_LOCK_TIMEOUT, isolation_level=None)) as db:
            db.execute("PRAGMA journal_mode = WAL")
            with db:  # commits, or rolls back if anything fails
                db.execute("BEGIN IMMEDIATE")
                for statement in dataset.SCHEMA:
                    db.execute(statement)
                _insert(db, dataset.seed_rows(patients))
            count: int = db.execute("SELECT count(*) FROM patients").fetchone()[0]
            return count
    except sqlite3.Error as exc:
        raise _unusable(path, exc) from None


def _insert(db: sqlite3.Connection, rows: Iterable[dataset.PatientRows]) -> None:
    columns = ", ".join(dataset.PATIENT_COLUMNS)
    marks = ", ".join("?" * len(dataset.PATIENT_COLUMNS))
    insert_patient = f"INSERT OR IGNORE INTO patients ({columns}) VALUES ({marks})"
    pending = iter(rows)
    while batch := list(islice(pending, _SEED_BATCH)):
        db.executemany(insert_patient, [rows.patient for rows in batch])
        for table, column in dataset.LIST_TABLES.items():
            # PatientRows names its list fields after their tables.
            items = [item for rows in batch for item in getattr(rows, table)]
            db.executemany(
                f"INSERT OR IGNORE INTO {table} (patient_id, position, {column}) VALUES (?, ?, ?)",
                items,
            )
        for detail, fields in dataset.DETAIL_TABLES.values():
            details = [item for rows in batch for item in getattr(rows, detail)]
            names = ", ".join(["patient_id", "position", *fields])
            marks = ", ".join("?" * (len(fields) + 2))
            db.executemany(
                f"INSERT OR IGNORE INTO {detail} ({names}) VALUES ({marks})",
                details,
            )


def _patient(row: tuple[str, ...]) -> Patient:
    columns = len(dataset.PATIENT_COLUMNS)
    diagnoses, medications, allergies = (_LIST_DECODER.decode(text) for text in row[columns:])
    return dataset.patient_from_row(row[:columns], diagnoses, medications, allergies)


def _read_patient(db: sqlite3.Connection, patient_id: str) -> Patient:
    row = db.execute(PATIENT_QUERY, (patient_id,)).fetchone()
    if row is None:
        raise PatientNotFound(patient_id)
    return _patient(row)


def _read_patients(db: sqlite3.Connection, patient_ids: tuple[str, ...]) -> tuple[Patient, ...]:
    rows = db.execute(SEARCH_QUERY, (_IDS_ENCODER.encode(patient_ids).decode(),)).fetchall()
    found = {patient.id: patient for patient in map(_patient, rows)}
    return tuple(found[patient_id] for patient_id in patient_ids if patient_id in found)


def _read_clinical(db: sqlite3.Connection, patient_id: str) -> ClinicalRecord:
    row = db.execute(CLINICAL_QUERY, (patient_id,)).fetchone()
    if row is None:
        raise PatientNotFound(patient_id)
    columns = len(dataset.PATIENT_COLUMNS)
    return dataset.clinical_from_row(row[:columns], *row[columns:])


class _Connection:
    """One read-only connection and the one thread that ever uses it."""

    def __init__(self, uri: str) -> None:
        self._uri = uri
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="carebench-sqlite")
        self._db: sqlite3.Connection | None = None
        #: Set when the running query's caller gave up on it; cleared before the next.
        self._cancelled = threading.Event()
        self._running: Future[Any] | None = None
        self.closed = False

    async def open(self) -> None:
        await asyncio.wrap_future(self._thread.submit(self._open))

    def _open(self) -> None:
        db = sqlite3.connect(self._uri, uri=True)
        db.execute(f"PRAGMA mmap_size = {_MMAP_BYTES}")
        db.set_progress_handler(self._cancelled.is_set, _PROGRESS_STEPS)
        self._db = db

    def submit(self, read: Read[K, T], key: K, delay: float, fail: bool) -> Future[T]:
        """Run one lookup in this connection's thread (the caller holds the connection)."""
        self._cancelled.clear()
        running = self._thread.submit(self._fetch, read, key, delay, fail)
        self._running = running
        return running

    def _fetch(self, read: Read[K, T], key: K, delay: float, fail: bool) -> T:
        assert self._db is not None
        # Event.wait rather than time.sleep: a cancelled query stops holding the connection.
        if self._cancelled.wait(delay) if delay > 0 else self._cancelled.is_set():
            raise BackendError("query cancelled (its deadline passed or the backend closed)")
        if fail:
            raise BackendError("injected database error")
        try:
            return read(self._db, key)
        except sqlite3.Error as exc:
            raise BackendError(f"sqlite: {exc}") from None

    def interrupt(self, query: Future[Any]) -> None:
        """Stop `query` if it still runs: wake its injected sleep and abort its statement.

        A finished query is left alone: its connection may already run the next one.
        """
        if query.done():
            return
        self._cancelled.set()
        if self._db is not None:
            self._db.interrupt()  # the one Connection method meant for other threads

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._running is not None:
            self.interrupt(self._running)
        await asyncio.wrap_future(self._thread.submit(self._close))
        self._thread.shutdown()

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


class SqliteBackend:
    """Patient records from a SQLite file seeded by `carebench db seed --backend sqlite`."""

    name = "sqlite"

    def __init__(self, path: Path, config: SimulatorConfig, default_file: bool = False) -> None:
        self.path = path
        #: Latency and errors are extras injected into real queries: none unless asked for.
        self.config = config.resolved(real=True)
        self._default_file = default_file
        self._rng = random.Random(self.config.seed)
        self._connections: list[_Connection] = []
        self._idle: list[_Connection] = []
        self._permits: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.queries = 0
        self.errors = 0
        self.pool_exhausted = 0
        self.active = 0
        self.peak_active = 0
        self.waiting = 0

    @classmethod
    def from_settings(cls, backend: BackendConfig, database: SimulatorConfig) -> SqliteBackend:
        return cls(_path_of(backend), database, default_file=backend.db_path is None)

    @classmethod
    async def seed(cls, backend: BackendConfig, patients: int) -> int:
        """Load `patients` synthetic patients into the file; returns how many it holds."""
        return await asyncio.to_thread(seed_file, _path_of(backend), patients)

    async def start(self) -> None:
        """Open the connections; seed the default file on first use, refuse an unseeded one."""
        if self._connections:
            return
        await self._check_seeded()
        self._loop = asyncio.get_running_loop()
        # --db-pool-size is not capped: the pool is what the patterns are measured against,
        # and it must mean the same here as on the simulator and PostgreSQL. The threads cost
        # little: they wait outside the GIL (in sqlite3_step or Event.wait), and the memory
        # map keeps the pages shared rather than copied into a cache per connection.
        connections = [_Connection(_read_only_uri(self.path)) for _ in range(self.config.pool_size)]
        try:
            await asyncio.gather(*(connection.open() for connection in connections))
        except sqlite3.Error as exc:
            await asyncio.gather(*(connection.close() for connection in connections))
            raise _unusable(self.path, exc) from None
        self._connections = connections
        self._idle = list(connections)
        self._permits = asyncio.Semaphore(len(connections))

    async def _check_seeded(self) -> None:
        if await asyncio.to_thread(count_patients, self.path) > 0:
            return
        if not self._default_file:
            state = "has no patients" if self.path.exists() else "does not exist"
            raise BackendUnavailable(
                f"the SQLite database {self.path} {state} (run: {_seed_command(self.path)})"
            )
        log.info("seeding %d patients into %s", dataset.DEFAULT_PATIENTS, self.path)
        await asyncio.to_thread(seed_file, self.path, dataset.DEFAULT_PATIENTS)

    def get_patient(
        self, patient_id: str, deadline: float | None = None
    ) -> Coroutine[Any, Any, Patient]:
        """The record from the file; the caller's cancellation (its deadline) interrupts the
        query in SQLite too, and the connection returns to the pool once its thread is done."""
        return self._query(_read_patient, patient_id)

    def get_patients(
        self, patient_ids: Sequence[str], deadline: float | None = None
    ) -> Coroutine[Any, Any, tuple[Patient, ...]]:
        """The records of those of `patient_ids` in the file, in one statement."""
        return self._query(_read_patients, tuple(patient_ids))

    def get_clinical_record(
        self, patient_id: str, deadline: float | None = None
    ) -> Coroutine[Any, Any, ClinicalRecord]:
        """The patient with its lists' detail rows, in one statement."""
        return self._query(_read_clinical, patient_id)

    async def _query(self, read: Read[K, T], key: K) -> T:
        self.queries += 1
        connection = await self._acquire()
        self.active += 1
        self.peak_active = max(self.peak_active, self.active)
        delay = self._rng.uniform(*self.config.latency_range)
        fail = self._rng.random() < (self.config.error_rate or 0.0)
        query = connection.submit(read, key, delay, fail)
        query.add_done_callback(partial(self._release_from_thread, connection))
        try:
            return await asyncio.wrap_future(query)
        except asyncio.CancelledError:
            connection.interrupt(query)
            raise
        except BackendError:
            self.errors += 1
            raise
        finally:
            # The future keeps its failure, whose traceback keeps this frame: a cycle per
            # failed query, left to the server's rare cyclic collections (gc_tuning.py).
            del query

    async def _acquire(self) -> _Connection:
        if self._permits is None:
            self.errors += 1
            raise BackendError("the sqlite backend is not started")
        await wait_for_connection(
            self._permits, self.config.pool_size, self.config.pool_timeout, self
        )
        return self._idle.pop()

    def _release_from_thread(self, connection: _Connection, query: Future[Any]) -> None:
        assert self._loop is not None
        # A closed loop raises RuntimeError: then no one will ask for a connection again.
        with suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._release, connection)

    def _release(self, connection: _Connection) -> None:
        self.active -= 1
        if connection.closed or self._permits is None:
            return
        self._idle.append(connection)
        self._permits.release()

    def health(self) -> BackendHealth:
        """Health from counters only: it runs no query."""
        return {
            "status": "healthy",
            "backend": self.name,
            "total_queries": self.queries,
            "total_errors": self.errors,
        }

    def stats(self) -> BackendStats:
        """Counters and pool state for /metrics."""
        return pool_stats(self.name, self, self.config.pool_size)

    async def close(self) -> None:
        """Interrupt running queries, close the connections and stop their threads."""
        connections, self._connections = self._connections, []
        self._idle = []
        self._permits = None
        await asyncio.gather(*(connection.close() for connection in connections))
