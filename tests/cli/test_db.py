"""`carebench db up` / `db down`: a throwaway PostgreSQL, and the errors around it."""

from __future__ import annotations

import asyncio
import pwd
import tempfile
from pathlib import Path

import pytest

from carebench.backends import pgcluster
from carebench.cli import main


def count_patients(dsn: str) -> int:
    import asyncpg

    async def count() -> int:
        connection = await asyncpg.connect(dsn)
        try:
            patients: int = await connection.fetchval("SELECT count(*) FROM patients")
            return patients
        finally:
            await connection.close()

    return asyncio.run(count())


@pytest.mark.postgres
@pytest.mark.slow
def test_up_prints_a_working_dsn_and_down_removes_everything(
    postgres_cluster: pgcluster.LocalCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    """up creates, starts and seeds a cluster and prints its DSN alone on stdout; up again
    finds the same one; down stops it and removes the directory; down again has nothing to do."""
    # Not under tmp_path: as root the cluster runs as postgres, which cannot enter it.
    directory = Path(tempfile.mkdtemp(prefix="carebench-cli-"))
    try:
        assert main(["db", "up", "--dir", str(directory), "--patients", "20"]) == 0
        out, err = capsys.readouterr()
        dsn = out.strip()
        assert dsn.startswith("postgresql://postgres@127.0.0.1:") and dsn.endswith("/carebench")
        assert (directory / "dsn").read_text().strip() == dsn
        assert f"--dsn {dsn}" in err and f"carebench db down --dir {directory}" in err
        assert count_patients(dsn) == 21
        assert main(["db", "up", "--dir", str(directory), "--patients", "30"]) == 0
        assert capsys.readouterr().out.strip() == dsn
        assert count_patients(dsn) == 31
    finally:
        assert main(["db", "down", "--dir", str(directory)]) == 0
    assert capsys.readouterr().out.startswith("stopped PostgreSQL and removed")
    assert not directory.exists()
    assert main(["db", "down", "--dir", str(directory)]) == 0
    assert "nothing to stop" in capsys.readouterr().out


def test_down_refuses_a_directory_that_is_not_a_cluster(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """down never deletes a directory it did not make."""
    (tmp_path / "notes.txt").write_text("keep me")
    assert main(["db", "down", "--dir", str(tmp_path)]) == 1
    assert (
        capsys.readouterr().err
        == f"error: {tmp_path} is not a carebench cluster: not removing it\n"
    )
    assert (tmp_path / "notes.txt").exists()


def test_up_refuses_a_directory_with_other_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """up never initialises a cluster over someone's files."""
    (tmp_path / "notes.txt").write_text("keep me")
    assert main(["db", "up", "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err == f"error: {tmp_path} exists and is not a carebench cluster: choose another --dir\n"


def test_missing_binaries_say_how_to_install_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without initdb/pg_ctl, up is one error line naming the package to install."""
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(pgcluster, "BINARY_DIRECTORIES", str(tmp_path / "postgresql/*/bin"))
    assert main(["db", "up", "--dir", str(tmp_path / "cluster")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: PostgreSQL server binaries (initdb, pg_ctl) not found")
    assert "apt-get install postgresql" in err and err.count("\n") == 1


def test_binaries_come_from_the_newest_installed_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With nothing on PATH, the highest /usr/lib/postgresql/<major>/bin wins (16 over 9)."""
    for major in ("9", "16", "13"):
        bindir = tmp_path / "postgresql" / major / "bin"
        bindir.mkdir(parents=True)
        for tool in ("initdb", "pg_ctl"):
            (bindir / tool).write_text("")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(pgcluster, "BINARY_DIRECTORIES", str(tmp_path / "postgresql/*/bin"))
    assert pgcluster.find_binaries() == tmp_path / "postgresql" / "16" / "bin"


def test_default_directory_is_in_the_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """As an ordinary user: $XDG_CACHE_HOME/carebench/postgres; as root: the postgres
    user's cache, since root's home is private and the cluster runs as postgres."""
    monkeypatch.setenv("XDG_CACHE_HOME", "/somewhere/cache")
    monkeypatch.setattr(pgcluster, "running_as_root", lambda: False)
    assert pgcluster.default_directory() == Path("/somewhere/cache/carebench/postgres")
    monkeypatch.setattr(pgcluster, "running_as_root", lambda: True)
    try:
        home = Path(pwd.getpwnam("postgres").pw_dir)
    except KeyError:
        pytest.skip("no postgres system user here")
    assert pgcluster.default_directory() == home / ".cache" / "carebench" / "postgres"
