"""Session fixtures: a real PostgreSQL for the postgres tests, started by carebench's own
cluster code (the same as `carebench db up`), stopped and removed when the session ends."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from carebench.backends.pgcluster import ClusterError, LocalCluster, down, find_binaries, up

#: Patients in the session's database: P00000..P00299 plus P12345.
POSTGRES_PATIENTS = 300


def start_cluster(prefix: str, patients: int) -> LocalCluster:
    """A new seeded cluster in a fresh temporary directory; skips the test when the
    PostgreSQL server binaries are missing (and only then)."""
    try:
        find_binaries()
    except ClusterError as missing:
        pytest.skip(f"no PostgreSQL to test against: {missing}")
    cluster = LocalCluster(Path(tempfile.mkdtemp(prefix=prefix)))
    try:
        # In a thread of its own: up() seeds with asyncio.run(), and the first test to ask
        # for the cluster may be running in an event loop already (an async fixture).
        with ThreadPoolExecutor(1) as thread:
            thread.submit(up, cluster.directory, patients).result()
    except BaseException:
        remove_cluster(cluster)
        raise
    return cluster


def remove_cluster(cluster: LocalCluster) -> None:
    """Stop the cluster and delete its directory, whatever state it was left in."""
    try:
        down(cluster.directory)
    finally:
        shutil.rmtree(cluster.directory, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[LocalCluster]:
    """The session's PostgreSQL, seeded with POSTGRES_PATIENTS patients."""
    cluster = start_cluster("carebench-pg-", POSTGRES_PATIENTS)
    yield cluster
    remove_cluster(cluster)


@pytest.fixture(scope="session")
def postgres_dsn(postgres_cluster: LocalCluster) -> str:
    """The DSN of the session's seeded `carebench` database."""
    return postgres_cluster.dsn()
