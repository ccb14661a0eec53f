"""--audit-log, --audit-format and --audit-queue-size: errors that name the flag (exit 2),
the sink they open, and the banner line."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path
from typing import Any

import pytest

from carebench.audit.config import AuditConfig
from carebench.audit.sinks import open_sink
from carebench.cli import main
from carebench.cli import serve as serve_command
from carebench.errors import ConfigError
from carebench.server.setup import ServerSetup
from carebench.server.startup import banner_lines


@pytest.fixture(autouse=True)
def no_server(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The real server replaced: what would be served is recorded instead."""
    calls: list[Any] = []

    def fake_serve(*args: Any) -> int:
        calls.append(args)
        return 0

    monkeypatch.setattr(serve_command, "serve", fake_serve)
    for name in list(os.environ):
        if name.startswith("CAREBENCH_"):
            monkeypatch.delenv(name)
    return calls


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--audit-log", "/no/such/dir/audit.log"], "--audit-log /no/such/dir/audit.log: no such"),
        (["--audit-format", "fhir"], "--audit-format has no effect without --audit-log"),
        (["--audit-queue-size", "5"], "--audit-queue-size has no effect without --audit-log"),
        (["--audit-log", "-", "--audit-queue-size", "0"], "--audit-queue-size (0) must be >= 1"),
        (["--audit-log", "-", "--audit-format", "hl7"], "--audit-format"),
    ],
)
def test_bad_audit_settings_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], no_server: list[Any]
) -> None:
    """Each mistake is one `error:` line naming the flag, and nothing is served."""
    try:
        code = main(["serve", *argv])
    except SystemExit as exit_:
        code = exit_.code  # type: ignore[assignment]
    assert code == 2
    assert message in capsys.readouterr().err
    assert no_server == []


def test_valid_settings_reach_the_server(no_server: list[Any], tmp_path: Path) -> None:
    """The audit section of the setup the server gets."""
    target = str(tmp_path / "audit.log")
    assert main(["serve", "--audit-log", target, "--audit-format", "fhir"]) == 0
    setup = no_server[0][1]
    assert isinstance(setup, ServerSetup)
    assert setup.audit == AuditConfig(target, "fhir")
    assert "--audit-log" not in setup.as_flags()  # never forwarded to a load test's servers


def test_the_log_file_is_created_owner_only_and_appended(tmp_path: Path) -> None:
    """Mode 0600 (ids of patients and of who read them), and earlier lines kept."""
    path = tmp_path / "audit.log"
    path.write_bytes(b"earlier\n")
    path.chmod(0o600)
    sink = open_sink(str(path))
    sink.write(b"later\n")
    sink.close()
    assert path.read_bytes() == b"earlier\nlater\n"
    fresh = tmp_path / "fresh.log"
    open_sink(str(fresh)).close()
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600


def test_a_file_that_cannot_be_opened_is_a_config_error(tmp_path: Path) -> None:
    """A directory given as the log: the error names the flag and the reason."""
    with pytest.raises(ConfigError, match=r"--audit-log .*: cannot open it for appending"):
        AuditConfig(str(tmp_path)).build_trail()
    assert AuditConfig().build_trail() is None
    trail = AuditConfig(str(tmp_path / "ok.log"), "fhir", 7).build_trail()
    assert trail is not None and trail.capacity == 7 and trail.stats()["format"] == "fhir"
    trail.close()


def test_the_check_before_start_opens_what_a_server_would(tmp_path: Path) -> None:
    """check_log fails as build_trail would, creates a missing log (mode 0600) and passes
    over no log and standard output."""
    with pytest.raises(ConfigError, match=r"--audit-log .*: cannot open it for appending"):
        AuditConfig(str(tmp_path)).check_log()
    fresh = tmp_path / "fresh.log"
    AuditConfig(str(fresh)).check_log()
    assert fresh.read_bytes() == b"" and stat.S_IMODE(fresh.stat().st_mode) == 0o600
    AuditConfig().check_log()
    AuditConfig("-").check_log()


def test_the_check_before_start_leaves_a_fifo_unopened(tmp_path: Path) -> None:
    """A FIFO is not opened by the check: with no reader the open would wait for one, and a
    reader would see its input end when the check closed it."""
    fifo = tmp_path / "audit.fifo"
    os.mkfifo(fifo)
    checked = threading.Event()

    def check() -> None:
        AuditConfig(str(fifo)).check_log()
        checked.set()

    thread = threading.Thread(target=check, daemon=True)
    thread.start()
    thread.join(timeout=10)
    waiting = thread.is_alive()
    if waiting:  # it is opening the FIFO: let it through before failing
        os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
    assert not waiting and checked.is_set()


def test_stdout_is_a_sink_the_server_does_not_close() -> None:
    """`-` writes to file descriptor 1 and leaves it open."""
    sink = open_sink("-")
    assert sink.name == "stdout"
    sink.close()
    os.fstat(1)  # still open


def test_the_banner_names_the_audit_log(tmp_path: Path) -> None:
    """The start-up banner says where records go and in which format."""
    target = str(tmp_path / "a.log")
    lines = banner_lines("workerpool", ServerSetup(audit=AuditConfig(target, "fhir")))
    assert f"  audit log        {target} (fhir)" in lines
    assert not any("audit" in line for line in banner_lines("workerpool", ServerSetup()))
