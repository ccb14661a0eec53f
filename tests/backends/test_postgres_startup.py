"""A PostgreSQL that cannot be used is one line at start-up naming the problem and the fix."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator

import pytest

from carebench.backends.config import BackendConfig
from carebench.backends.dataset import DETAIL_TABLES
from carebench.backends.pgcluster import LocalCluster, free_port
from carebench.backends.postgres import PostgresBackend
from carebench.backends.records import synthetic_clinical
from carebench.backends.simulator import SimulatorConfig
from carebench.errors import BackendUnavailable
from tests.backends.pg_activity import observer, scratch_database

pytestmark = pytest.mark.postgres
PASSWORD_USER = "carebench_pw"


async def start_error(dsn: str | None, pool_size: int = 2) -> str:
    """The message start() fails with; the backend holds nothing open afterwards."""
    backend = PostgresBackend(dsn, SimulatorConfig(pool_size=pool_size).resolved(real=True))
    with pytest.raises(BackendUnavailable) as failure:
        await backend.start()
    assert backend.health()["status"] == "down"
    return str(failure.value)


def with_database(dsn: str, name: str) -> str:
    return f"{dsn.rpartition('/')[0]}/{name}"


async def test_no_dsn() -> None:
    """Without --dsn the message says how to give one and how to get a local database."""
    message = await start_error(None)
    assert "needs --dsn (or CAREBENCH_DSN)" in message and "carebench db up" in message


async def test_not_a_postgres_url() -> None:
    """A DSN that is not a postgresql:// URL is named, without its password."""
    message = await start_error("mysql://root:hunter2@127.0.0.1/carebench")
    assert message.startswith("invalid --dsn 'mysql://root:***@127.0.0.1/carebench'")
    assert "hunter2" not in message


async def test_nothing_listening_on_the_port() -> None:
    """A port nobody listens on: cannot reach host:port, check --dsn or run db up."""
    port = free_port()
    message = await start_error(f"postgresql://postgres:secret@127.0.0.1:{port}/carebench")
    assert message.startswith(f"cannot reach PostgreSQL at 127.0.0.1:{port}")
    assert "check the host and port in --dsn" in message and "carebench db up" in message
    assert "secret" not in message


async def test_missing_database(postgres_dsn: str) -> None:
    """A database name the server does not have is named, with how to create it."""
    message = await start_error(with_database(postgres_dsn, "no_such_db"))
    assert message.startswith("database 'no_such_db' does not exist at 127.0.0.1:")
    assert "createdb" in message


async def test_unseeded_database(postgres_dsn: str) -> None:
    """A database without carebench's tables: the message is the seed command to run."""
    async with scratch_database(postgres_dsn) as dsn:
        message = await start_error(dsn)
    assert "has no carebench tables" in message
    assert message.endswith(f"run: carebench db seed --backend postgres --dsn {dsn}")


async def test_empty_tables(postgres_dsn: str) -> None:
    """Tables without patients are unseeded too."""
    async with scratch_database(postgres_dsn) as dsn:
        async with observer(dsn) as admin:
            await admin.execute("CREATE TABLE patients (id TEXT PRIMARY KEY)")
        message = await start_error(dsn)
    assert "has no patients; run: carebench db seed --backend postgres" in message


async def test_database_seeded_before_the_detail_tables(postgres_dsn: str) -> None:
    """A database without the clinical detail tables (an older carebench's) is refused with
    the seed command; seeding again adds them and $everything then reads them."""
    async with scratch_database(postgres_dsn) as dsn:
        config = BackendConfig("postgres", dsn=dsn)
        await PostgresBackend.seed(config, 20)
        async with observer(dsn) as admin:
            for detail, _ in DETAIL_TABLES.values():
                await admin.execute(f"DROP TABLE {detail}")
        message = await start_error(dsn)
        assert "seeded by an older carebench" in message and "carebench db seed" in message
        assert await PostgresBackend.seed(config, 20) == 21
        backend = PostgresBackend(dsn, SimulatorConfig(pool_size=1).resolved(real=True))
        await backend.start()
        try:
            assert await backend.get_clinical_record("P00003") == synthetic_clinical("P00003")
        finally:
            await backend.close()


async def test_pool_larger_than_the_server_allows(postgres_dsn: str) -> None:
    """More connections than max_connections: lower --db-pool-size, and none are left open."""
    message = await start_error(postgres_dsn, pool_size=400)
    assert "has no room for 400 connections" in message and "--db-pool-size" in message
    # Server processes of connections closed by earlier tests may take a moment to exit, so
    # wait (bounded) for the count to settle rather than read it once.
    async with observer(postgres_dsn) as admin:
        for _ in range(100):
            leftover = await admin.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'carebench'"
            )
            if leftover == 0:
                break
            await asyncio.sleep(0.05)
    assert leftover == 0


@pytest.fixture
async def password_user(postgres_cluster: LocalCluster, postgres_dsn: str) -> AsyncIterator[str]:
    """A role that must log in with a password (the cluster trusts everyone else); its DSN
    without the password."""
    hba = postgres_cluster.data / "pg_hba.conf"
    original = hba.read_text()
    hba.write_text(f"host all {PASSWORD_USER} 127.0.0.1/32 scram-sha-256\n{original}")
    async with observer(postgres_dsn) as admin:
        await admin.execute(f"CREATE ROLE {PASSWORD_USER} LOGIN PASSWORD 'right-one'")
        await admin.execute("SELECT pg_reload_conf()")
        try:
            yield postgres_dsn.replace("//postgres@", f"//{PASSWORD_USER}@")
        finally:
            hba.write_text(original)
            await admin.execute("SELECT pg_reload_conf()")
            await admin.execute(f"DROP ROLE {PASSWORD_USER}")


async def test_wrong_password(password_user: str) -> None:
    """A refused password names the user and the fix, and never shows the password."""
    dsn = password_user.replace(f"{PASSWORD_USER}@", f"{PASSWORD_USER}:wrong-one@")
    message = await start_error(dsn)
    assert message.startswith(f"PostgreSQL at 127.0.0.1:{dsn_port(dsn)} refused the password")
    assert f"for user '{PASSWORD_USER}'" in message and "PGPASSWORD" in message
    assert "wrong-one" not in message


def dsn_port(dsn: str) -> str:
    return dsn.rpartition(":")[2].partition("/")[0]


@pytest.mark.slow
def test_serve_with_a_bad_dsn_exits_1_with_one_error_line() -> None:
    """`carebench serve --backend postgres --dsn BAD`: exit 1, one `error:` line, no trace."""
    dsn = f"postgresql://postgres:topsecret@127.0.0.1:{free_port()}/carebench"
    command = [sys.executable, "-m", "carebench", "serve", "--port", "0", "--quiet"]
    done = subprocess.run(
        [*command, "--backend", "postgres", "--dsn", dsn],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    errors = done.stderr.strip().splitlines()
    assert len(errors) == 1, done.stderr
    assert errors[0].startswith("error: cannot reach PostgreSQL at 127.0.0.1:")
    assert "topsecret" not in done.stderr + done.stdout
