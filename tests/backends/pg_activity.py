"""Watching a real PostgreSQL from the side: pg_stat_activity, on a connection of our own."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import asyncpg

from carebench.backends.pgdiagnosis import APPLICATION_NAME

#: Connections the tests open to watch or administer carry this name, not "carebench".
OBSERVER = "carebench-tests"


@dataclass(frozen=True, slots=True)
class Activity:
    """carebench's connections to one database at one moment."""

    connections: int
    active: int
    sleeping: int
    pids: frozenset[int] = field(default_factory=frozenset)


@asynccontextmanager
async def observer(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection that is not counted as carebench's."""
    connection = await asyncpg.connect(dsn, server_settings={"application_name": OBSERVER})
    try:
        yield connection
    finally:
        await connection.close()


async def activity(connection: asyncpg.Connection) -> Activity:
    """How many carebench connections the current database has, running, and in pg_sleep."""
    rows = await connection.fetch(
        "SELECT pid, state, wait_event FROM pg_stat_activity "
        "WHERE application_name = $1 AND datname = current_database()",
        APPLICATION_NAME,
    )
    return Activity(
        connections=len(rows),
        active=sum(row["state"] == "active" for row in rows),
        sleeping=sum(row["wait_event"] == "PgSleep" for row in rows),
        pids=frozenset(row["pid"] for row in rows),
    )


async def wait_for(
    connection: asyncpg.Connection, condition: Callable[[Activity], bool], within: float = 10.0
) -> Activity:
    """Poll pg_stat_activity until `condition` holds; AssertionError after `within` s."""
    deadline = time.monotonic() + within
    while True:
        seen = await activity(connection)
        if condition(seen):
            return seen
        if time.monotonic() > deadline:
            raise AssertionError(f"pg_stat_activity never matched; last seen {seen}")
        await asyncio.sleep(0.01)


@asynccontextmanager
async def scratch_database(dsn: str) -> AsyncIterator[str]:
    """A new empty database next to `dsn`'s (its DSN), dropped afterwards."""
    name = f"scratch_{uuid.uuid4().hex[:12]}"
    base, _, _ = dsn.rpartition("/")
    async with observer(dsn) as admin:
        await admin.execute(f"CREATE DATABASE {name}")
        try:
            yield f"{base}/{name}"
        finally:
            await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
