"""`carebench serve --processes 2` as real processes on one port: spread, metrics, drain, exit,
and a dead process replaced."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from carebench.server.process import ServerProcess

pytestmark = pytest.mark.slow
FAST = ["--db-profile", "ideal", "--min-latency", "0", "--max-latency", "0", "--quiet"]
SLOW_QUERY = ["--db-profile", "ideal", "--min-latency", "600", "--max-latency", "600"]


async def metrics_of(url: str, fmt: str = "json") -> httpx.Response:
    """GET /metrics on a fresh connection, so the kernel may hand it to either process."""
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        return await client.get("/metrics" if fmt == "json" else f"/metrics?format={fmt}")


async def wait_for(url: str, ready: Any, what: str) -> dict[str, Any]:
    """Poll the JSON /metrics until `ready(document)` (readiness, not a fixed sleep)."""
    for _ in range(1000):
        document: dict[str, Any] = (await metrics_of(url)).json()
        if ready(document):
            return document
        await asyncio.sleep(0.01)
    raise AssertionError(f"never saw {what}")


def both_up(document: dict[str, Any]) -> bool:
    return bool(document.get("process_count") == 2)


def prometheus_total(text: str) -> float:
    counts = re.findall(r"^carebench_requests_total\{[^}]*\} (\S+)$", text, re.MULTILINE)
    return sum(float(count) for count in counts)


async def spread_requests(url: str, at_most: int) -> int:
    """Patient requests, each on a new connection, until both processes have served some."""
    sent = 0
    while sent < at_most:
        for _ in range(20):
            async with httpx.AsyncClient(base_url=url, timeout=10) as client:
                response = await client.get(f"/api/v1/patients?id=P{sent:05d}")
            assert response.status_code == 200
            sent += 1
        document = (await metrics_of(url)).json()
        if all(entry["total_requests"] for entry in document["processes"]):
            return sent
    raise AssertionError(f"one process served none of {sent} fresh connections")


async def test_two_processes_share_the_port_and_answer_the_same_totals() -> None:
    """Fresh connections reach both processes; every scrape, whichever process answers it,
    counts all requests (JSON totals, per process entries and Prometheus agree)."""
    server = ServerProcess(["--processes", "2", "--error-rate", "0", *FAST])
    server.start()
    try:
        await wait_for(server.url, both_up, "both processes up")
        sent = await spread_requests(server.url, at_most=400)
        documents = [(await metrics_of(server.url)).json() for _ in range(6)]
        scrapes = [(await metrics_of(server.url, "prometheus")).text for _ in range(6)]
    finally:
        status = server.stop()
    pids = set()
    for document in documents:
        entries = document["processes"]
        assert document["total_requests"] == sent == document["success_requests"]
        assert sum(entry["total_requests"] for entry in entries) == sent
        assert all(entry["total_requests"] > 0 for entry in entries)
        assert document["pattern_state"]["workers"] == 2 * 20  # per process: capacity adds up
        assert document["status_codes"] == {"200": sent}
        assert document["unreachable_processes"] == []
        pids |= {entry["pid"] for entry in entries}
    assert len(pids) == 2
    for text in scrapes:
        assert prometheus_total(text) == sent
        assert "carebench_processes 2.0" in text
    assert status == 0
    finals = [line for line in server.output if line.startswith("final stats")]
    assert len(finals) == 3
    assert f"final stats (workerpool, 2 processes): {sent} requests" in finals[-1]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_a_signal_drains_every_process(sig: signal.Signals) -> None:
    """SIGTERM or SIGINT (Ctrl-C) to the parent: requests running in both processes all get
    their 200, and the parent exits 0 once both children have."""
    args = ["--processes", "2", "--error-rate", "0", "--quiet", *SLOW_QUERY]
    server = ServerProcess(args)
    server.start()
    try:
        await wait_for(server.url, both_up, "both processes up")
        async with contextlib.AsyncExitStack() as stack:
            document, responses = await drain_under_load(server, stack, 16, sig)
    finally:
        status = server.stop()
    assert len(document["processes"]) == 2
    assert [r.status_code for r in responses] == [200] * 16
    assert status == 0
    assert "final stats (workerpool, 2 processes): 16 requests" in server.output[-1]


async def drain_under_load(
    server: ServerProcess, stack: contextlib.AsyncExitStack, count: int, sig: signal.Signals
) -> tuple[dict[str, Any], list[httpx.Response]]:
    """`count` slow requests on their own connections, SIGTERM once both processes run some."""
    clients = [
        await stack.enter_async_context(httpx.AsyncClient(base_url=server.url, timeout=10))
        for _ in range(count)
    ]
    pending = [
        asyncio.create_task(client.get(f"/api/v1/patients?id=P{i}"))
        for i, client in enumerate(clients)
    ]
    document = await wait_for(
        server.url,
        lambda d: (
            all(e["pattern_state"]["in_flight"] for e in d["processes"])
            and d["pattern_state"]["in_flight"] == count
        ),
        "requests in flight in both processes",
    )
    server.terminate(sig)
    return document, list(await asyncio.gather(*pending))


def server_children(parent: int) -> list[int]:
    """The living server processes `parent` has spawned (not multiprocessing's resource
    tracker), from /proc."""
    try:
        children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    except FileNotFoundError:
        return []
    found = []
    for pid in map(int, children):
        with contextlib.suppress(FileNotFoundError):
            if b"--multiprocessing-fork" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
    return found


async def poll_metrics(url: str, ready: Any, what: str) -> dict[str, Any]:
    """wait_for, through a process dying: a scrape whose connection was reset is retried."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            document: dict[str, Any] = (await metrics_of(url)).json()
            if ready(document):
                return document
        await asyncio.sleep(0.01)
    raise AssertionError(f"never saw {what}")


async def keep_asking(url: str, stop: asyncio.Event, tally: Counter[int | str]) -> None:
    """Patient requests back to back on one keep-alive connection (a new one after a
    failure), each response's status or a transport failure counted."""
    limits = httpx.Limits(max_connections=1)
    async with httpx.AsyncClient(base_url=url, timeout=10, limits=limits) as client:
        while not stop.is_set():
            try:
                response = await client.get("/api/v1/patients?id=P00042")
            except httpx.TransportError:
                tally["failed"] += 1
                continue
            tally[response.status_code] += 1


def answered(tallies: list[Counter[int | str]]) -> int:
    return sum(tally[200] for tally in tallies)


async def test_a_killed_child_is_replaced_while_the_other_serves() -> None:
    """kill -9 of one process under load: a new process takes its place on the port
    (processes_restarted 1 in JSON and Prometheus, the dead pid gone from processes[]) while
    the other answers. Only a request in flight on a connection to the killed process may
    fail: at most one per client connection, and every answer is a 200."""
    clients = 8
    server = ServerProcess(["--processes", "2", "--error-rate", "0", *FAST])
    server.start()
    stop = asyncio.Event()
    tallies: list[Counter[int | str]] = [Counter() for _ in range(clients)]
    try:
        document = await wait_for(server.url, both_up, "both processes up")
        victim = document["processes"][0]["pid"]
        tasks = [asyncio.create_task(keep_asking(server.url, stop, t)) for t in tallies]
        await poll_until(lambda: all(tally[200] for tally in tallies), "every client answered")
        os.kill(victim, signal.SIGKILL)
        at_kill = answered(tallies)
        replaced = await poll_metrics(
            server.url,
            lambda d: d["processes_restarted"] == 1 and d["process_count"] == 2,
            "a process in place of the killed one",
        )
        at_replacement = answered(tallies)
        await poll_until(lambda: answered(tallies) > at_replacement + 100, "more answers")
        text = (await metrics_of(server.url, "prometheus")).text
        stop.set()
        await asyncio.gather(*tasks)
    finally:
        stop.set()
        status = server.stop()
    pids = [entry["pid"] for entry in replaced["processes"]]
    assert victim not in pids and replaced["unreachable_processes"] == []
    (newcomer,) = set(pids) - {entry["pid"] for entry in document["processes"]}
    assert "carebench_process_restarts_total 1.0" in text
    assert at_replacement > at_kill  # the other process answered while one was missing
    assert all(set(tally) <= {200, "failed"} and tally["failed"] <= 1 for tally in tallies)
    assert status == 0
    line = f"warning: server process {victim} exited unexpectedly (killed by SIGKILL); "
    assert any(f"{line}replaced by process {newcomer} after 0.25 s" in x for x in server.output)


async def poll_until(ready: Any, what: str) -> None:
    """Yield to the clients until `ready()` (a deadline, not a fixed sleep)."""
    deadline = time.monotonic() + 30
    while not ready():
        assert time.monotonic() < deadline, f"never saw {what}"
        await asyncio.sleep(0.01)


def test_children_killed_at_start_up_make_the_parent_give_up() -> None:
    """Every server process killed as soon as it appears (before it is ready): the parent
    replaces at most 5 within its window, then says `error:` and exits 1, in bounded time."""
    command = [sys.executable, "-m", "carebench", "serve", "--processes", "2", "--port", "0"]
    process = subprocess.Popen(
        [*command, *FAST], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    killed: set[int] = set()
    deadline = time.monotonic() + 60
    try:
        while process.poll() is None and time.monotonic() < deadline:
            for pid in set(server_children(process.pid)) - killed:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            time.sleep(0.005)  # polling for the next child to appear
    finally:
        if process.poll() is None:
            process.kill()
        output = process.communicate()[0]
    assert process.returncode == 1
    assert "error: server processes keep exiting: 6 exits within 60 s, more than 5" in output
    assert 1 <= output.count("replaced by process") <= 5
    assert len(killed) >= 6
    assert "Traceback" not in output


async def test_sigterm_right_after_a_kill_drains_and_exits_0() -> None:
    """SIGTERM once the parent has reaped a killed process (its replacement 0.25 s away):
    every living process drains, status 0; the final totals say the dead one's counts are
    lost."""
    server = ServerProcess(["--processes", "2", *FAST])
    server.start()
    try:
        document = await wait_for(server.url, both_up, "both processes up")
        victim = document["processes"][0]["pid"]
        os.kill(victim, signal.SIGKILL)
        # Reaped (a zombie keeps its /proc entry): the parent has seen the death, so the
        # signal comes during the restart, not before the parent knew of it.
        await poll_until(lambda: not Path(f"/proc/{victim}").exists(), "the parent reaping it")
    finally:
        status = server.stop()
    assert status == 0, server.output
    assert any(
        f"server process {victim} exited unexpectedly (killed by SIGKILL)" in line
        for line in server.output
    )
    # The other process drained, and so did a replacement if one started before the signal.
    replaced = sum("replaced by process" in line for line in server.output)
    drained = [line for line in server.output if ", process " in line and "final stats" in line]
    assert len(drained) == 1 + replaced
    assert "the counts of 1 that died are lost" in server.output[-1]


async def test_every_process_keeps_an_audit_record(tmp_path: Path) -> None:
    """--audit-log with two processes: both append to the one file, and the group's /metrics
    counts every record written."""
    log = tmp_path / "audit.jsonl"
    server = ServerProcess(
        ["--processes", "2", "--error-rate", "0", "--audit-log", str(log), *FAST]
    )
    server.start()
    try:
        await wait_for(server.url, both_up, "both processes up")
        sent = await spread_requests(server.url, at_most=400)
        document = await wait_for(
            server.url, lambda d: d["audit"]["written"] == sent, "every record written"
        )
    finally:
        status = server.stop()
    assert status == 0
    assert all(entry["audit"]["written"] for entry in document["processes"])
    assert len(log.read_text().splitlines()) == sent


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5"])
def test_bad_process_counts_exit_2(value: str) -> None:
    """--processes takes a whole number >= 1: anything else is one `error:` line, exit 2."""
    command = [sys.executable, "-m", "carebench", "serve", "--processes", value, "--port", "0"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 2
    assert "error:" in result.stderr and "--processes" in result.stderr
    assert "Traceback" not in result.stderr


async def test_granian_workers_answer_for_the_group() -> None:
    """--server granian runs --processes workers; /metrics counts both workers' requests."""
    pytest.importorskip("granian")
    args = ["--server", "granian", "--processes", "2", "--error-rate", "0", *FAST]
    server = ServerProcess(args)
    server.start()
    try:
        await wait_for(server.url, both_up, "both workers up")
        sent = await spread_requests(server.url, at_most=400)
        text = (await metrics_of(server.url, "prometheus")).text
    finally:
        status = server.stop()
    assert status == 0
    assert prometheus_total(text) == sent
