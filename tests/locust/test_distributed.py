"""Locust headless, a master and two workers on localhost, against a real carebench server:
the merged result counts exactly the requests the server's /metrics counted."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from carebench.loadgen.results import OUTCOMES
from carebench.locust import LOCUSTFILE
from carebench.report.documents import read_results
from carebench.server.process import ServerProcess

pytestmark = pytest.mark.slow
LOCUST = Path(sys.executable).with_name("locust")
#: Generous: two Locust processes start (~1-2 s each on the shared machine), run 3 s, drain.
DEADLINE = 90.0


def free_port() -> int:
    """A port nothing listens on now (Locust's master needs one its workers can be told)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def server_metrics(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        document: dict[str, Any] = json.loads(response.read())
        return document


#: An API key for the server's --auth apikey (MIN_KEY_LENGTH or longer).
API_KEY = "k-locust-0123456789abcdef"


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(API_KEY + "\n", encoding="ascii")
    return path


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A shedder server on port 0 that wants an API key (the workers must send the token)."""
    if not LOCUST.exists():
        pytest.skip(f"locust is not installed beside {sys.executable} (pip install -e '.[dev]')")
    keys = tmp_path / "keys.txt"
    keys.write_text(API_KEY + "\n", encoding="ascii")
    args = ["--pattern", "shedder", "--quiet", "--db-profile", "ideal"]
    with ServerProcess([*args, "--auth", "apikey", "--api-keys", str(keys)]) as started:
        yield started


def locust(log: Path, *args: str) -> subprocess.Popen[bytes]:
    command = [str(LOCUST), "-f", str(LOCUSTFILE), *args]
    with log.open("wb") as out:
        # cwd: Locust reads a locust.conf or pyproject.toml it finds there; the test's own.
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=log.parent)


def run_distributed(url: str, tmp_path: Path, output: Path, token_file: Path) -> str:
    """Master + two workers for 3 s; the master's log (it exits 0 or the test fails)."""
    port = str(free_port())
    master_log = tmp_path / "master.log"
    master = locust(
        master_log,
        "--headless", "--master", "--master-bind-host", "127.0.0.1",
        "--master-bind-port", port, "--expect-workers", "2",
        "--users", "8", "--spawn-rate", "8", "--run-time", "3s", "--host", url,
        "--exit-code-on-error", "0",
        "--carebench-ids", "zipf:1000", "--carebench-endpoint", "fhir-read",
        "--carebench-priorities", "critical:10,standard:70,batch:20",
        "--carebench-output", str(output), "--carebench-token-file", str(token_file),
    )  # fmt: skip
    worker_args = ("--worker", "--master-host", "127.0.0.1", "--master-port", port)
    workers = [locust(tmp_path / f"worker{index}.log", *worker_args) for index in (1, 2)]
    try:
        code = master.wait(timeout=DEADLINE)
        for worker in workers:
            worker.wait(timeout=30)
    finally:
        for process in (master, *workers):
            if process.poll() is None:
                process.kill()
                process.wait()
    log = master_log.read_text(encoding="utf-8", errors="replace")
    assert code == 0, log
    return log


def test_master_and_two_workers_count_what_the_server_counted(
    server: ServerProcess, tmp_path: Path, token_file: Path
) -> None:
    """Every request the server answered is in the merged result once, from both workers
    (each sending the API key given to the master), classified into outcomes and
    priority classes that add up, and `carebench report` reads the file."""
    output = tmp_path / "locust.json"
    log = run_distributed(server.url, tmp_path, output, token_file)
    metrics = server_metrics(server.url)
    (result,) = read_results(output)
    total = result["total_requests"]
    assert total > 0
    assert total == metrics["total_requests"], log
    assert sum(result["outcomes"][outcome] for outcome in OUTCOMES) == total
    assert result["outcomes"]["success"] == metrics["success_requests"]
    assert result["outcomes"]["timeout"] == result["outcomes"]["connection_error"] == 0
    assert result["outcomes"]["client_error"] == 0  # no 401: the workers had the token
    assert sum(int(n) for n in result["status_codes"].values()) == total
    assert sum(slot["completed"] for slot in result["timeline"]) == total
    classes = result["by_priority"]
    assert classes is not None and set(classes) == {"critical", "standard", "batch"}
    assert sum(item["total_requests"] for item in classes.values()) == total
    assert result["pattern"] == "shedder"
    assert result["interrupted"] is False
    assert result["config"]["concurrency"] == 8
    samples = result["server_samples"]
    assert samples and all("in_flight" in sample for sample in samples)
    assert [sample["t"] for sample in samples] == sorted(sample["t"] for sample in samples)
    assert "from 2 generator(s)" in log
    report = subprocess.run(
        [sys.executable, "-m", "carebench", "report", str(output)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert report.returncode == 0, report.stderr
    assert "shedder" in report.stdout and f"{total}" in report.stdout


def test_one_process_alone_counts_what_the_server_counted(
    server: ServerProcess, tmp_path: Path, token_file: Path
) -> None:
    """Without --master, one Locust process generates, drains and writes the result."""
    output = tmp_path / "alone.json"
    log_path = tmp_path / "alone.log"
    process = locust(
        log_path,
        "--headless", "--users", "4", "--spawn-rate", "4", "--run-time", "2s",
        "--host", server.url, "--exit-code-on-error", "0",
        "--carebench-output", str(output), "--carebench-token-file", str(token_file),
    )  # fmt: skip
    assert process.wait(timeout=DEADLINE) == 0, log_path.read_text(encoding="utf-8")
    (result,) = read_results(output)
    assert result["total_requests"] == server_metrics(server.url)["total_requests"] > 0
    assert result["outcomes"]["client_error"] == 0
    assert result["by_priority"] is None  # no --carebench-priorities: no header sent


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--host", "http://127.0.0.1:9", "--carebench-ids", "zipf:0"], "error: --ids"),
        (["--carebench-ids", "uniform:10"], "error: --host"),
    ],
)
def test_bad_options_exit_2_before_any_load(tmp_path: Path, args: list[str], message: str) -> None:
    """A bad --carebench-* value or a missing --host ends Locust with `error: ...`, exit 2."""
    if not LOCUST.exists():
        pytest.skip(f"locust is not installed beside {sys.executable}")
    log = tmp_path / "locust.log"
    process = locust(log, "--headless", "--run-time", "1s", *args)
    assert process.wait(timeout=DEADLINE) == 2
    assert message in log.read_text(encoding="utf-8")
