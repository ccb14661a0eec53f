"""A bad `serve` setting ends the command the same way with one process or several, on
uvicorn and granian: the same `error:` line and status, no traceback, nothing started."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

FORMS = {
    "uvicorn": ["--processes", "1"],
    "uvicorn-processes": ["--processes", "2"],
    "granian": ["--server", "granian", "--processes", "1"],
    "granian-processes": ["--server", "granian", "--processes", "2"],
}
FAST = ["--db-profile", "ideal", "--min-latency", "0", "--max-latency", "0", "--quiet"]


@pytest.fixture(params=list(FORMS))
def form(request: pytest.FixtureRequest) -> list[str]:
    """How the server is run: one process or two, on each server."""
    if str(request.param).startswith("granian"):
        pytest.importorskip("granian")
    return FORMS[request.param]


def run_serve(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "carebench", "serve", "--port", "0", *args, *FAST]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def unix_socket(tmp_path: Path) -> Iterator[Path]:
    """A path that is a listening Unix socket: open() on it fails (ENXIO)."""
    path = tmp_path / "audit.sock"
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(path))
        yield path


def audit_log_directory(tmp_path: Path, unix_socket: Path) -> tuple[list[str], str]:
    return ["--audit-log", str(tmp_path)], f"--audit-log {tmp_path}: cannot open it for appending"


def audit_log_socket(tmp_path: Path, unix_socket: Path) -> tuple[list[str], str]:
    return (
        ["--audit-log", str(unix_socket)],
        f"--audit-log {unix_socket}: cannot open it for appending",
    )


def tls_certificate_not_pem(tmp_path: Path, unix_socket: Path) -> tuple[list[str], str]:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    return ["--tls-cert", str(junk), "--tls-key", str(junk)], f"--tls-cert ({junk}) and"


def tls_certificate_missing(tmp_path: Path, unix_socket: Path) -> tuple[list[str], str]:
    missing = tmp_path / "missing.pem"
    return ["--tls-cert", str(missing), "--tls-key", str(missing)], "--tls-cert: no such file"


def jwt_key_not_a_key(tmp_path: Path, unix_socket: Path) -> tuple[list[str], str]:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a key\n")
    return ["--auth", "jwt", "--jwt-key", str(junk)], f"--jwt-key {junk}: not a PEM public key"


BadSetting = Callable[[Path, Path], tuple[list[str], str]]


@pytest.mark.parametrize(
    "bad",
    [
        audit_log_directory,
        audit_log_socket,
        tls_certificate_not_pem,
        tls_certificate_missing,
        jwt_key_not_a_key,
    ],
)
def test_a_bad_setting_exits_2_in_every_form(
    bad: BadSetting, form: list[str], tmp_path: Path, unix_socket: Path
) -> None:
    """One `error:` line naming the flag, exit 2, no traceback, no server started (an audit
    log only a server process opened used to fail the children: exit 1, or granian's
    traceback)."""
    argv, message = bad(tmp_path, unix_socket)
    result = run_serve(*form, *argv)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"error: {message}")
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr
    assert "listening" not in result.stdout


def test_a_database_that_cannot_be_used_exits_1_in_every_form(
    form: list[str], tmp_path: Path
) -> None:
    """A file that is not a SQLite database fails the start (status 1, one line) before any
    server process starts, with one process or several."""
    junk = tmp_path / "junk.db"
    junk.write_text("not a database\n")
    result = run_serve(*form, "--backend", "sqlite", "--db-path", str(junk))
    assert result.returncode == 1, result.stderr
    assert result.stderr == (
        f"error: {junk} is not a SQLite database; point --db-path at another file (create one "
        "with: carebench db seed --backend sqlite --db-path FILE)\n"
    )
    assert "listening" not in result.stdout
