"""`loadtest --generators N` against real servers: merged counts are the server's counts,
bad values exit 2, a failed generator fails the run, and no generator outlives it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
import urllib.request
from importlib import resources
from typing import Any

import jsonschema
import psutil
import pytest

from carebench.loadgen import generators, results
from carebench.loadgen.config import LoadConfig
from carebench.loadgen.generator_process import GeneratorJob, _generate
from carebench.loadgen.generators import GeneratorFailed, GeneratorPool
from carebench.loadgen.shares import split_load
from carebench.loadgen.wire import (
    ENCODER,
    FROM_GENERATOR,
    Begin,
    Progress,
    Ready,
    Stop,
    recorder_from_state,
)
from carebench.server.process import ServerProcess

pytestmark = pytest.mark.slow
#: A database with no randomness: 1 ms per query, no errors.
EXACT_DB = ["--min-latency", "1", "--max-latency", "1", "--error-rate", "0", "--seed", "3"]


def loadtest(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "carebench", "loadtest", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


def schema() -> dict[str, Any]:
    text = resources.files("carebench.report").joinpath("schema.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def test_two_generators_send_exactly_the_budget_the_server_counts() -> None:
    """--target with 2 generators: 301 requests in total, 151 + 150, all seen by /metrics."""
    with ServerProcess(["--pattern", "workerpool", "--quiet", *EXACT_DB]) as server:
        run = loadtest(
            "--target", server.url, "--generators", "2", "--requests", "301",
            "--concurrency", "6", "--json",
        )  # fmt: skip
    assert run.returncode == 0, run.stderr
    [result] = json.loads(run.stdout)
    jsonschema.validate([result], schema())
    assert result["total_requests"] == 301
    assert result["server_metrics"]["total_requests"] == 301
    assert result["success_requests"] == result["server_metrics"]["success_requests"] == 301
    assert [g["requests"] for g in result["generators"]] == [151, 150]
    assert result["config"]["generators"] == 2
    assert sum(point["completed"] for point in result["timeline"]) == 301
    assert 0 < result["latency_ms"]["min"] <= result["latency_ms"]["p99"]


def test_generators_against_started_servers_follow_the_open_loop_schedule() -> None:
    """Servers started per pattern, open loop at 200/s for 1 s split between 2 generators:
    the merged run is one result whose count is the server's and whose slots are the rate's."""
    run = loadtest(
        "--pattern", "workerpool,semaphore", "--generators", "2", "--rate", "200",
        "--duration", "1", "--concurrency", "10", "--json", *EXACT_DB,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    results = json.loads(run.stdout)
    jsonschema.validate(results, schema())
    assert [r["pattern"] for r in results] == ["workerpool", "semaphore"]
    for result in results:
        assert result["total_requests"] == result["server_metrics"]["total_requests"]
        assert result["open_loop"]["scheduled_requests"] == 200
        assert result["total_requests"] == 200
        assert len(result["generators"]) == 2
        assert all(g["shares_server_core"] is False for g in result["generators"])
        assert set(result["affinity"]["loadgen"]).isdisjoint(result["affinity"]["server"])


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "--generators (0) must be between 1 and 64"),
        ("1.5", "argument --generators: invalid int value: '1.5'"),
        ("many", "invalid int value"),
        ("5", "--generators (5) must be <= the connections (4)"),
    ],
)
def test_bad_generator_counts_exit_2_with_an_error_line(value: str, message: str) -> None:
    """Bad --generators values are refused before anything starts."""
    run = loadtest("--generators", value, "--concurrency", "4", "--requests", "10", timeout=60)
    assert run.returncode == 2
    assert run.stderr.startswith("error: ")
    assert message in run.stderr
    assert "Traceback" not in run.stderr


def test_generators_cannot_run_in_process() -> None:
    """--mode inprocess has no HTTP for generator processes to speak: refused, exit 2."""
    run = loadtest("--generators", "2", "--mode", "inprocess", "--requests", "10", timeout=60)
    assert run.returncode == 2
    assert run.stderr.startswith("error: --generators runs client processes")


async def test_a_failing_generator_fails_the_run_and_none_is_left() -> None:
    """A generator that cannot start (pinned to a CPU that does not exist) fails the run
    with its cause; its sibling is stopped too."""
    load = LoadConfig(requests=10, concurrency=2, generators=2)
    shares = split_load(load, 2)
    jobs = [
        GeneratorJob("http://127.0.0.1:9", load, shares[0]),
        GeneratorJob("http://127.0.0.1:9", load, shares[1], cpus=[100_000]),
    ]
    pool = GeneratorPool(jobs)
    with pytest.raises(GeneratorFailed, match=r"generator 1 failed: OSError"), pool:
        await pool.ready()
    processes = [generator.process for generator in pool._generators]
    assert processes and not any(process.is_alive() for process in processes)


def generator_children(pid: int) -> list[psutil.Process]:
    children = psutil.Process(pid).children(recursive=True)
    found = []
    for child in children:
        with contextlib.suppress(psutil.Error):
            if "--multiprocessing-fork" in child.cmdline():
                found.append(child)
    return found


def test_sigterm_stops_every_generator_and_keeps_the_measurement() -> None:
    """SIGTERM to loadtest mid-run: the generators stop, the partial run is reported as
    interrupted (exit 130), and no generator process is left behind."""
    with ServerProcess(["--pattern", "workerpool", "--quiet", *EXACT_DB]) as server:
        command = [
            sys.executable, "-m", "carebench", "loadtest", "--target", server.url,
            "--generators", "2", "--duration", "60", "--concurrency", "4", "--json",
        ]  # fmt: skip
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            children = wait_for_generators(process.pid, 2)
            wait_for_requests(server.url)
            process.send_signal(signal.SIGTERM)
            stdout, stderr = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == 130, stderr
    [result] = json.loads(stdout)
    assert result["interrupted"]
    assert result["total_requests"] > 0
    assert result["duration_seconds"] < 60
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive


def test_ctrl_c_to_the_whole_terminal_group_stops_cleanly() -> None:
    """Ctrl-C reaches every process of the foreground group: the generators leave it to the
    load test (no traceback from them), which stops them and reports the run (exit 130)."""
    with ServerProcess(["--pattern", "workerpool", "--quiet", *EXACT_DB]) as server:
        command = [
            sys.executable, "-m", "carebench", "loadtest", "--target", server.url,
            "--generators", "2", "--duration", "60", "--concurrency", "4", "--json",
        ]  # fmt: skip
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
        )
        try:
            children = wait_for_generators(process.pid, 2)
            wait_for_requests(server.url)
            os.killpg(process.pid, signal.SIGINT)
            stdout, stderr = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == 130
    assert b"Traceback" not in stderr
    [result] = json.loads(stdout)
    assert result["interrupted"]
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive


def wait_for_generators(pid: int, count: int) -> list[psutil.Process]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        children = generator_children(pid)
        if len(children) >= count:
            return children
        time.sleep(0.05)
    raise AssertionError(f"loadtest started fewer than {count} generators in 60 s")


def wait_for_requests(url: str) -> None:
    """Until the server has answered some load (the generators are measuring)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
            if json.loads(response.read()).get("total_requests", 0) > 0:
                return
        time.sleep(0.05)
    raise AssertionError("no request reached the server in 60 s")


#: Nothing listens here: requests fail at once as connection errors (no server needed).
NOWHERE = "http://127.0.0.1:9"


async def started_pool(
    monkeypatch: pytest.MonkeyPatch, load: LoadConfig
) -> tuple[GeneratorPool, float]:
    monkeypatch.setattr(generators, "SILENCE_LIMIT", 1.0)
    monkeypatch.setattr(generators, "EXIT_GRACE", 0.5)
    jobs = [GeneratorJob(NOWHERE, load, share) for share in split_load(load, load.generators)]
    pool = GeneratorPool(jobs)
    pool.__enter__()
    await pool.ready()
    return pool, pool.begin(load.warmup)


async def test_a_generator_that_falls_silent_fails_the_run_and_is_killed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A stopped (hung) generator: after SILENCE_LIMIT the run fails naming it, and leaving
    the pool kills it even though it cannot answer Stop or SIGTERM."""
    pool, _ = await started_pool(monkeypatch, LoadConfig(duration=30, concurrency=2, generators=2))
    hung = pool._generators[1].process
    assert hung.pid is not None
    os.kill(hung.pid, signal.SIGSTOP)
    try:
        with pytest.raises(GeneratorFailed, match="generator 1 sent nothing for 1 s"):
            await pool.finish()
    finally:
        pool.__exit__(None, None, None)
    assert not any(generator.process.is_alive() for generator in pool._generators)


async def test_a_generator_that_dies_fails_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """A generator killed mid-run: the run fails with its exit code, not a hang."""
    pool, _ = await started_pool(monkeypatch, LoadConfig(duration=30, concurrency=2, generators=2))
    victim = pool._generators[0].process
    assert victim.pid is not None
    os.kill(victim.pid, signal.SIGKILL)
    try:
        with pytest.raises(GeneratorFailed, match=r"generator 0 failed: it exited \(code -9\)"):
            await pool.finish()
    finally:
        pool.__exit__(None, None, None)


async def test_stopped_generators_report_what_they_measured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Stop (the parent's Ctrl-C) ends a timed run early: each generator still reports, and
    the merged run is marked interrupted."""
    load = LoadConfig(duration=30, concurrency=2, generators=2, warmup=0.1)
    pool, started = await started_pool(monkeypatch, load)
    try:
        await asyncio.sleep(max(started - time.perf_counter(), 0) + 0.3)
        pool.stopping = True
        run = await asyncio.wait_for(pool.finish(), 30)
    finally:
        pool.__exit__(None, None, None)
    assert run.interrupted
    assert run.recorder.started == started
    assert run.recorder.count("connection_error") == run.recorder.total > 0
    assert run.duration < 10
    assert sum(r["requests"] for r in run.runs) == run.recorder.total


async def test_one_generator_in_process_keeps_its_schedule_from_the_common_start() -> None:
    """A generator's own loop (run here, over a pipe) waits for Begin, warms up, then
    sends its share of the open-loop schedule: rate/2 for 0.5 s from start + offset."""
    load = LoadConfig(rate=100.0, duration=0.5, concurrency=2, generators=2, warmup=0.1)
    share = split_load(load, 2)[1]
    with ServerProcess(["--pattern", "workerpool", "--quiet", *EXACT_DB]) as server:
        ours, theirs = multiprocessing.Pipe()
        task = asyncio.create_task(_generate(theirs, GeneratorJob(server.url, load, share)))
        assert isinstance(FROM_GENERATOR.decode(await asyncio.to_thread(ours.recv_bytes)), Ready)
        at = time.perf_counter() + 0.05
        ours.send_bytes(ENCODER.encode(Begin(at)))
        report = await asyncio.wait_for(task, 30)
    recorder = recorder_from_state(report.recorder)
    assert recorder.started == at + 0.1
    # Slots at 0.01 + 0.02 * i while before 0.5 s: i = 0..24.
    assert report.scheduled == report.sent == recorder.total == 25
    assert recorder.count("success") == 25
    assert not report.interrupted
    assert report.cpu_seconds > 0
    messages = []
    while ours.poll():
        messages.append(FROM_GENERATOR.decode(ours.recv_bytes()))
    assert any(isinstance(message, Progress) for message in messages)


async def test_a_generator_stopped_before_the_start_reports_an_empty_run() -> None:
    """Stop before Begin (Ctrl-C while generators start): an empty, interrupted report."""
    load = LoadConfig(requests=100, concurrency=2, generators=2)
    ours, theirs = multiprocessing.Pipe()
    task = asyncio.create_task(
        _generate(theirs, GeneratorJob(NOWHERE, load, split_load(load, 2)[0]))
    )
    assert isinstance(FROM_GENERATOR.decode(await asyncio.to_thread(ours.recv_bytes)), Ready)
    ours.send_bytes(ENCODER.encode(Stop()))
    report = await asyncio.wait_for(task, 10)
    assert report.interrupted
    assert report.sent == 0
    assert recorder_from_state(report.recorder).total == 0


async def test_a_generator_whose_parent_is_gone_stops() -> None:
    """The pipe closing (the parent died) stops a generator's budget run early."""
    load = LoadConfig(requests=10_000_000, concurrency=2, generators=2)
    ours, theirs = multiprocessing.Pipe()
    task = asyncio.create_task(
        _generate(theirs, GeneratorJob(NOWHERE, load, split_load(load, 2)[0]))
    )
    assert isinstance(FROM_GENERATOR.decode(await asyncio.to_thread(ours.recv_bytes)), Ready)
    ours.send_bytes(ENCODER.encode(Begin(time.perf_counter())))
    await asyncio.sleep(0.2)
    ours.close()
    report = await asyncio.wait_for(task, 10)
    assert report.interrupted
    assert 0 < report.sent < 5_000_000


async def test_a_timed_closed_loop_measures_after_its_warm_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Warm-up then measuring on time: the warm-up's requests (folded into its recorder's
    timeline as they go) are left out, measuring starts at begin + warm-up and lasts
    --duration."""
    monkeypatch.setattr(results, "FLUSH_EVERY", 16)
    load = LoadConfig(duration=0.5, concurrency=4, generators=2, warmup=0.5)
    share = split_load(load, 2)[0]
    with ServerProcess(["--pattern", "workerpool", "--quiet", "--db-profile", "ideal"]) as server:
        ours, theirs = multiprocessing.Pipe()
        task = asyncio.create_task(_generate(theirs, GeneratorJob(server.url, load, share)))
        assert isinstance(FROM_GENERATOR.decode(await asyncio.to_thread(ours.recv_bytes)), Ready)
        at = time.perf_counter() + 0.05
        ours.send_bytes(ENCODER.encode(Begin(at)))
        report = await asyncio.wait_for(task, 30)
    recorder = recorder_from_state(report.recorder)
    assert recorder.started == at + 0.5
    assert recorder.total == report.sent > 0
    assert 0.5 <= report.ended - recorder.started < 1.5
