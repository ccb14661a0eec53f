"""Why a PostgreSQL database cannot be used, in one line that names the fix.

Turns what asyncpg raises at connection time (refused, wrong password, no such database, no
room for the pool) and what the start-up check finds (no tables, no patients) into
`BackendUnavailable`. Messages show the DSN without its password.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from carebench.backends.dsn import DsnParts, dsn_parts, redact_dsn
from carebench.errors import BackendUnavailable

#: What a request gets when the database is not there (stopped, killed, restarting, or a
#: network error): the request fails with a 500, and health reports the backend down.
CONNECTION_FAILURES: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
)
#: Seconds to establish one connection (asyncpg's default is 60).
CONNECT_TIMEOUT = 10.0
#: Lets `pg_stat_activity` tell carebench's connections apart.
APPLICATION_NAME = "carebench"
DSN_EXAMPLE = "postgresql://postgres@127.0.0.1:5432/carebench"


def connect_options() -> dict[str, Any]:
    """asyncpg.connect/create_pool keyword arguments every carebench connection uses."""
    return {
        "timeout": CONNECT_TIMEOUT,
        "server_settings": {"application_name": APPLICATION_NAME},
    }


def require_dsn(dsn: str | None) -> str:
    """`dsn`, or `BackendUnavailable` saying how to give one."""
    if not dsn:
        raise BackendUnavailable(
            f"--backend postgres needs --dsn (or CAREBENCH_DSN), e.g. {DSN_EXAMPLE}; "
            "`carebench db up` starts a local PostgreSQL and prints its DSN"
        )
    try:
        dsn_parts(dsn)
    except ValueError as bad:
        raise BackendUnavailable(f"invalid --dsn {redact_dsn(dsn)!r}: {bad}") from None
    return dsn


async def check_seeded(connection: Any, dsn: str) -> None:
    """`BackendUnavailable` (saying how to seed) unless the patients table has rows and the
    clinical detail tables are there."""
    parts = dsn_parts(dsn)
    where = f"database {parts.database!r} at {parts.where}"
    seed = f"run: carebench db seed --backend postgres --dsn {redact_dsn(dsn)}"
    try:
        seeded = await connection.fetchval("SELECT EXISTS (SELECT 1 FROM patients)")
    except asyncpg.UndefinedTableError:
        raise BackendUnavailable(f"{where} has no carebench tables; {seed}") from None
    if not seeded:
        raise BackendUnavailable(f"{where} has no patients; {seed}")
    try:
        await connection.fetchval("SELECT EXISTS (SELECT 1 FROM condition_details)")
    except asyncpg.UndefinedTableError:
        raise BackendUnavailable(
            f"{where} was seeded by an older carebench (no clinical detail tables); "
            f"seeding again adds them: {seed.removeprefix('run: ')}"
        ) from None


def unavailable(problem: BaseException, dsn: str, pool_size: int | None = None) -> Exception:
    """`problem`, raised while connecting to `dsn`, as one line naming the fix."""
    parts = dsn_parts(dsn)
    message = _explain(problem, parts, pool_size)
    if parts.password:
        message = message.replace(parts.password, "***")
    return BackendUnavailable(message)


def _explain(problem: BaseException, parts: DsnParts, pool_size: int | None) -> str:
    where, user, database = parts.where, parts.user, parts.database
    reason = str(problem) or type(problem).__name__
    if isinstance(problem, asyncpg.InvalidPasswordError):
        return (
            f"PostgreSQL at {where} refused the password for user {user!r}: "
            "fix the password in --dsn (or set PGPASSWORD)"
        )
    if isinstance(problem, asyncpg.InvalidAuthorizationSpecificationError):
        return f"PostgreSQL at {where} refused user {user!r} ({reason}): fix the user in --dsn"
    if isinstance(problem, asyncpg.InvalidCatalogNameError):
        return (
            f"database {database!r} does not exist at {where}: fix the database name in "
            f"--dsn, or create it (createdb -h {parts.host} -p {parts.port} {database})"
        )
    if isinstance(problem, asyncpg.TooManyConnectionsError):
        return (
            f"PostgreSQL at {where} has no room for {pool_size or 'more'} connections "
            f"({reason}): lower --db-pool-size or raise the server's max_connections"
        )
    if isinstance(problem, asyncpg.CannotConnectNowError):
        return f"PostgreSQL at {where} is starting or stopping ({reason}): try again shortly"
    if isinstance(problem, TimeoutError):
        return (
            f"no answer from PostgreSQL at {where} within {CONNECT_TIMEOUT:g}s: check the "
            "host and port in --dsn (and any firewall in between)"
        )
    if isinstance(problem, OSError):
        return (
            f"cannot reach PostgreSQL at {where} ({reason}): is it running? check the host "
            "and port in --dsn, or start a local one with `carebench db up`"
        )
    return f"cannot use PostgreSQL at {where}: {reason}"
