"""`carebench loadtest` against real servers: counts add up, JSON matches its schema."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from importlib import resources
from typing import Any

import jsonschema
import psutil
import pytest

from carebench.backends.simulator import SimulatorConfig
from carebench.loadgen.config import LoadConfig
from carebench.loadgen.runner import RunPlan, run_plan
from carebench.patterns.base import PatternConfig, pattern_names
from carebench.server.process import ServerProcess
from carebench.server.setup import ServerSetup

pytestmark = pytest.mark.slow
FAST_DB = ["--min-latency", "1", "--max-latency", "3", "--error-rate", "0.1", "--seed", "4"]
#: A database with no randomness and no capacity limit: 10 ms per query, no errors.
EXACT_DB = SimulatorConfig(0.01, 0.01, 0.0, profile="ideal")


def exact_setup(database: SimulatorConfig = EXACT_DB, **patterns: Any) -> ServerSetup:
    return ServerSetup(patterns=PatternConfig(**patterns), database=database)


def schema() -> dict[str, Any]:
    text = resources.files("carebench.report").joinpath("schema.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "carebench", "loadtest", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


def test_json_output_validates_and_counts_add_up() -> None:
    """--json prints one schema-valid result per pattern whose outcomes sum to --requests."""
    patterns = ",".join(pattern_names())
    result = run_cli(
        "--requests",
        "200",
        "--concurrency",
        "20",
        "--json",
        "--pattern",
        "all",
        "--limit",
        "50",
        "--rate-limit",
        "100000",
        "--burst",
        "1000",
        *FAST_DB,
    )
    assert result.returncode == 0, result.stderr
    results = json.loads(result.stdout)
    jsonschema.validate(results, schema())
    assert ",".join(r["pattern"] for r in results) == patterns
    for r in results:
        assert r["total_requests"] == 200
        assert sum(r["outcomes"].values()) == 200
        assert r["success_requests"] + r["error_requests"] + r["rejected_requests"] == 200
        assert r["outcomes"]["backend_error"] > 0
        server = r["server_metrics"]
        assert server["total_requests"] == 200
        assert server["success_requests"] == r["success_requests"]
        assert r["server_samples"] and "in_flight" in r["server_samples"][0]


def test_overload_shows_rejections_and_their_fast_latency() -> None:
    """Past workers + queue, the bounded pattern's rejections are counted and fast."""
    plan = RunPlan(
        patterns=["workerpool"],
        load=LoadConfig(requests=300, concurrency=60),
        setup=exact_setup(
            SimulatorConfig(0.02, 0.02, 0.0, profile="ideal"), workers=2, queue_size=4
        ),
    )
    (result,) = run_plan(plan)
    assert result["rejected_requests"] > 100
    assert result["success_requests"] + result["rejected_requests"] == 300
    assert result["rejection_latency_ms"]["median"] < result["success_latency_ms"]["median"]
    server = result["server_metrics"]
    assert server is not None
    assert server["rejected_requests"] == result["rejected_requests"]


def test_open_loop_holds_a_modest_rate() -> None:
    """At 100/s for 2 s against a server with room to spare, ~200 requests go out on time."""
    plan = RunPlan(
        patterns=["workerpool"],
        load=LoadConfig(rate=100.0, duration=2.0, concurrency=20),
        setup=ServerSetup(database=SimulatorConfig(0.001, 0.003, 0.1, seed=4)),
    )
    (result,) = run_plan(plan)
    open_loop = result["open_loop"]
    assert open_loop is not None
    assert result["total_requests"] == 200
    assert open_loop["scheduled_requests"] == 200
    assert open_loop["achieved_rate"] == pytest.approx(100.0, rel=0.1)
    assert open_loop["schedule_kept"] is True
    jsonschema.validate([result], schema())


def test_target_mode_drives_a_running_server() -> None:
    """--target drives an existing server and labels the result with its pattern."""
    with ServerProcess(["--pattern", "optimized", "--quiet", *FAST_DB]) as server:
        plan = RunPlan(
            patterns=[],
            load=LoadConfig(requests=50, concurrency=5),
            mode="target",
            target=server.url,
        )
        (result,) = run_plan(plan)
    assert result["pattern"] == "optimized"
    assert result["mode"] == "target"
    assert result["total_requests"] == 50


def test_in_process_mode_calls_patterns_directly() -> None:
    """--mode inprocess produces labelled results without any server."""
    result = run_cli(
        "--mode",
        "inprocess",
        "--requests",
        "100",
        "--concurrency",
        "10",
        "--json",
        "--pattern",
        "naive,workerpool",
        *FAST_DB,
    )
    assert result.returncode == 0, result.stderr
    results = json.loads(result.stdout)
    jsonschema.validate(results, schema())
    assert [(r["pattern"], r["mode"]) for r in results] == [
        ("naive", "inprocess"),
        ("workerpool", "inprocess"),
    ]
    assert all(r["total_requests"] == 100 for r in results)


def test_refused_target_is_reported_with_its_cause() -> None:
    """A target that refuses connections is one error line and a non-zero exit."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = run_cli("--target", f"http://127.0.0.1:{port}", "--requests", "5")
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: cannot reach http://127.0.0.1:{port}")
    assert "refused" in result.stderr.lower()
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rate", "10"], "--rate needs --duration"),
        (["--pattern", "nope"], "unknown pattern"),
        (["--ids", "zipf:x"], "--ids takes"),
        (["--requests", "0"], "--requests"),
        (["--target", "ftp://x"], "http"),
        (["--target", "http://127.0.0.1:1", "--mode", "inprocess"], "cannot be combined"),
    ],
)
def test_bad_flags_exit_2(args: list[str], message: str) -> None:
    """Invalid load-test flags give one `error:` line and exit status 2, starting nothing."""
    result = run_cli(*args, timeout=30)
    assert result.returncode == 2
    assert result.stderr.startswith("error:")
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def servers_with(marker: str) -> list[int]:
    """PIDs of live processes whose command line contains `marker`."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                    arguments = cmdline.read()
            except OSError:
                continue
            if marker.encode() in arguments and b"\0serve\0" in arguments:
                pids.append(int(entry))
    return pids


def served_requests(marker: str) -> int:
    """Requests the load test's server has answered so far (0 while it is not listening)."""
    for pid in servers_with(marker):
        try:
            listening = [
                c.laddr.port
                for c in psutil.Process(pid).net_connections("tcp")
                if c.status == psutil.CONN_LISTEN
            ]
            for port in listening:
                url = f"http://127.0.0.1:{port}/metrics"
                with urllib.request.urlopen(url, timeout=2) as response:
                    return int(json.loads(response.read())["total_requests"])
        except (psutil.Error, OSError, ValueError, KeyError):
            continue
    return 0


def test_ctrl_c_stops_cleanly_and_reports_what_it_measured() -> None:
    """SIGINT mid-run: exit 130, the partial result is printed, no server is left running."""
    marker = "987654321"
    command = [
        sys.executable,
        "-m",
        "carebench",
        "loadtest",
        "--pattern",
        "workerpool,optimized",
        "--requests",
        "1000000",
        "--concurrency",
        "10",
        "--min-latency",
        "5",
        "--max-latency",
        "5",
        "--error-rate",
        "0",
        "--seed",
        marker,
    ]
    pipe = subprocess.PIPE
    with subprocess.Popen(command, stdout=pipe, stderr=pipe, text=True) as run:
        deadline = time.monotonic() + 30
        while not servers_with(marker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert servers_with(marker), "the load test never started a server"
        # Signal once the server has answered load (not at a fixed delay: on a busy machine
        # the server's start-up alone can take over a second).
        while served_requests(marker) < 100 and time.monotonic() < deadline:
            time.sleep(0.05)
        run.send_signal(signal.SIGINT)
        stdout, stderr = run.communicate(timeout=60)
    assert run.returncode == 130, stderr
    assert "=== workerpool" in stdout and "(interrupted" in stdout
    assert "=== optimized" not in stdout
    assert "Traceback" not in stderr
    assert servers_with(marker) == []


@pytest.mark.parametrize("mode", ["http", "inprocess"])
def test_priority_mix_under_overload_favours_critical(mode: str) -> None:
    """Overloading a small worker pool with a class mix: critical succeeds more than batch."""
    plan = RunPlan(
        patterns=["workerpool"],
        load=LoadConfig(requests=600, concurrency=60, priorities="critical:1,batch:1", seed=3),
        mode=mode,
        setup=exact_setup(workers=2, queue_size=10),
    )
    (result,) = run_plan(plan)
    classes = result["by_priority"]
    assert classes is not None
    assert set(classes) == {"critical", "batch"}
    assert sum(c["total_requests"] for c in classes.values()) == 600
    assert classes["critical"]["success_rate_percent"] > classes["batch"]["success_rate_percent"]
    jsonschema.validate([result], schema())


def test_honoring_retry_after_turns_a_rejection_storm_into_a_trickle() -> None:
    """Refused clients that wait Retry-After (1 s here) send a handful of requests, not a storm."""
    polite = LoadConfig(concurrency=10, duration=2.0, honor_retry_after=True)
    slow = SimulatorConfig(0.05, 0.05, 0.0, profile="ideal")
    (result,) = run_plan(
        RunPlan(patterns=["semaphore"], load=polite, setup=exact_setup(slow, limit=2))
    )
    assert 0 < result["rejected_requests"] <= 40
    assert result["success_requests"] > 0
    assert result["config"]["honor_retry_after"] is True
