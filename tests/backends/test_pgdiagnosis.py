"""Start-up problems with PostgreSQL as one line naming the fix; DSNs without passwords.

No server needed: the exceptions are the ones asyncpg raises (tests/backends/
test_postgres_startup.py provokes them from a real server)."""

from __future__ import annotations

import logging
import sys

import asyncpg
import pytest

from carebench.backends.dsn import dsn_parts, redact_dsn
from carebench.backends.pgdiagnosis import require_dsn, unavailable
from carebench.backends.postgres import OneLineWarning, patient_query
from carebench.errors import BackendUnavailable

DSN = "postgresql://alice:s3cret@db.example:6543/records"


def test_dsn_parts_with_libpq_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """Host, port, user and database come from the URL, else PG* variables, else libpq's."""
    parts = dsn_parts(DSN)
    assert (parts.host, parts.port, parts.user, parts.database) == (
        "db.example",
        6543,
        "alice",
        "records",
    )
    assert parts.where == "db.example:6543"
    monkeypatch.setenv("PGUSER", "bob")
    monkeypatch.delenv("PGDATABASE", raising=False)
    monkeypatch.delenv("PGHOST", raising=False)
    monkeypatch.delenv("PGPORT", raising=False)
    bare = dsn_parts("postgresql://")
    assert (bare.host, bare.port, bare.user, bare.database) == ("localhost", 5432, "bob", "bob")
    socket = dsn_parts("postgresql:///carebench?host=/var/run/postgresql")
    assert socket.where == "/var/run/postgresql" and socket.database == "carebench"


def test_redact_dsn() -> None:
    """The password becomes ***; DSNs without one are unchanged."""
    assert redact_dsn(DSN) == "postgresql://alice:***@db.example:6543/records"
    assert redact_dsn("postgresql://alice@h/db") == "postgresql://alice@h/db"


def test_require_dsn() -> None:
    """No DSN, or one that is not a postgresql:// URL, is BackendUnavailable."""
    assert require_dsn(DSN) == DSN
    with pytest.raises(BackendUnavailable, match="needs --dsn"):
        require_dsn(None)
    with pytest.raises(BackendUnavailable, match=r"^invalid --dsn 'http://x:\*\*\*@h/d'"):
        require_dsn("http://x:pw@h/d")


@pytest.mark.parametrize(
    ("problem", "start"),
    [
        (
            asyncpg.InvalidPasswordError("password authentication failed for user alice"),
            "PostgreSQL at db.example:6543 refused the password for user 'alice': fix",
        ),
        (
            asyncpg.InvalidAuthorizationSpecificationError('role "alice" does not exist'),
            "PostgreSQL at db.example:6543 refused user 'alice' (role \"alice\" does not exist)",
        ),
        (
            asyncpg.InvalidCatalogNameError('database "records" does not exist'),
            "database 'records' does not exist at db.example:6543: fix the database name",
        ),
        (
            asyncpg.TooManyConnectionsError("sorry, too many clients already"),
            "PostgreSQL at db.example:6543 has no room for 100 connections",
        ),
        (
            asyncpg.CannotConnectNowError("the database system is starting up"),
            "PostgreSQL at db.example:6543 is starting or stopping",
        ),
        (TimeoutError(), "no answer from PostgreSQL at db.example:6543 within 10s"),
        (
            ConnectionRefusedError(111, "Connection refused"),
            "cannot reach PostgreSQL at db.example:6543 ([Errno 111] Connection refused)",
        ),
        (RuntimeError("something new"), "cannot use PostgreSQL at db.example:6543: something"),
    ],
)
def test_connection_problems_name_the_fix(problem: BaseException, start: str) -> None:
    """Each way connecting fails becomes one line starting with what went wrong."""
    message = str(unavailable(problem, DSN, pool_size=100))
    assert message.startswith(start)
    assert "\n" not in message


def test_a_password_in_the_driver_message_is_hidden() -> None:
    """Whatever the driver says, the DSN's password never reaches the message."""
    message = str(unavailable(ValueError(f"bad DSN {DSN}"), DSN))
    assert "s3cret" not in message and "alice:***@" in message


def test_the_query_sleeps_only_when_latency_is_injected() -> None:
    """Without injected latency the statement has no pg_sleep and a single parameter."""
    assert "pg_sleep" not in patient_query(False) and "$2" not in patient_query(False)
    assert "pg_sleep($2)" in patient_query(True)
    for table in ("diagnoses", "medications", "allergies"):
        assert f"FROM {table} WHERE patient_id = p.id ORDER BY position" in patient_query(True)


def test_pool_warnings_are_one_line() -> None:
    """asyncpg's reconnect warnings lose their traceback and keep the reason."""
    try:
        raise ConnectionRefusedError(111, "Connection refused")
    except ConnectionRefusedError:
        record = logging.LogRecord(
            "asyncpg.pool", logging.WARNING, __file__, 1, "retrying %s", ("now",), sys.exc_info()
        )
    assert OneLineWarning().filter(record)
    assert record.exc_info is None
    assert record.getMessage() == "retrying now ([Errno 111] Connection refused)"
