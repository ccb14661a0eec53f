"""`carebench serve` as a real process on a real socket: traffic, metrics, SIGTERM drain."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys

import httpx
import pytest

from carebench.patterns.base import pattern_names
from carebench.server.process import ServerProcess

pytestmark = pytest.mark.slow
SLOW_QUERY = ["--db-profile", "ideal", "--min-latency", "400", "--max-latency", "400"]


async def wait_in_flight(client: httpx.AsyncClient, count: int) -> None:
    """Poll /metrics until `count` requests are inside the pattern (readiness, not a sleep)."""
    for _ in range(500):
        state = (await client.get("/metrics")).json()["pattern_state"]
        if state["in_flight"] >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never saw {count} requests in flight")


DRAIN_CASES = [(name, "uvicorn") for name in pattern_names()] + [("workerpool", "granian")]


@pytest.mark.parametrize(("pattern", "http_server"), DRAIN_CASES)
async def test_sigterm_drains_in_flight_requests(pattern: str, http_server: str) -> None:
    """Requests accepted before SIGTERM all get their 200; the server exits 0 with final stats."""
    args = ["--pattern", pattern, "--server", http_server, "--error-rate", "0", "--quiet"]
    server = ServerProcess([*args, *SLOW_QUERY])
    server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            pending = [
                asyncio.create_task(client.get(f"/api/v1/patients?id=P{i}")) for i in range(4)
            ]
            await wait_in_flight(client, 4)
            server.terminate()
            responses = await asyncio.gather(*pending)
    finally:
        status = server.stop()
    assert [r.status_code for r in responses] == [200] * 4
    assert [r.json()["patient"]["id"] for r in responses] == [f"P{i}" for i in range(4)]
    assert status == 0
    final = [line for line in server.output if line.startswith("final stats")]
    assert final and "4 ok" in final[0]


async def test_overload_over_real_http_is_counted() -> None:
    """Past workers + queue, a real server answers 503 + Retry-After and /metrics counts them."""
    args = ["--workers", "1", "--queue-size", "1", "--error-rate", "0", "--quiet", *SLOW_QUERY]
    with ServerProcess(args) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            responses = await asyncio.gather(
                *(client.get(f"/api/v1/patients?id=P{i}") for i in range(6))
            )
            metrics = (await client.get("/metrics")).json()
            prometheus = (await client.get("/metrics?format=prometheus")).text
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 200, 503, 503, 503, 503]
    assert all(r.headers["retry-after"] for r in responses if r.status_code == 503)
    assert metrics["rejected_requests"] == 4 and metrics["success_requests"] == 2
    assert metrics["rejection_rate_percent"] == pytest.approx(66.667, abs=0.01)
    assert 'carebench_requests_total{outcome="rejected",pattern="workerpool"} 4.0' in prometheus


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "carebench", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)


def test_invalid_flag_exits_2_without_traceback() -> None:
    """A bad flag value is one `error:` line on stderr and exit status 2."""
    result = run_cli("serve", "--min-latency", "120", "--max-latency", "100")
    assert result.returncode == 2
    assert result.stderr.startswith("error: --min-latency (120) must be <= --max-latency (100)")
    assert "Traceback" not in result.stderr


def test_port_in_use_is_reported() -> None:
    """Starting on a taken port fails with the cause, not a traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("serve", "--port", str(port), "--quiet")
    assert result.returncode == 1
    assert f"error: cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


async def test_rate_limit_answers_429_with_retry_after() -> None:
    """--pattern ratelimit over real HTTP: past the burst, 429 with a Retry-After."""
    args = [
        "--pattern",
        "ratelimit",
        "--rate-limit",
        "1",
        "--burst",
        "2",
        "--quiet",
        "--db-profile",
        "ideal",
        "--min-latency",
        "1",
        "--max-latency",
        "1",
        "--error-rate",
        "0",
    ]
    with ServerProcess(args) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            responses = [await client.get(f"/api/v1/patients?id=P{i}") for i in range(5)]
    assert [r.status_code for r in responses][:2] == [200, 200]
    limited = [r for r in responses if r.status_code == 429]
    assert len(limited) >= 2
    assert all(int(r.headers["retry-after"]) >= 1 for r in limited)


async def test_retries_and_circuit_breaker_over_real_http() -> None:
    """A always-failing database is retried, then the circuit opens and fails fast with 503."""
    args = [
        "--retries",
        "2",
        "--circuit-breaker",
        "--breaker-threshold",
        "3",
        "--breaker-reset",
        "30",
        "--error-rate",
        "1",
        "--db-profile",
        "ideal",
        "--min-latency",
        "1",
        "--max-latency",
        "1",
        "--quiet",
    ]
    with ServerProcess(args) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            statuses = [
                (await client.get(f"/api/v1/patients?id=P{i}")).status_code for i in range(4)
            ]
            health = (await client.get("/health")).json()
            metrics = (await client.get("/metrics")).json()
    assert statuses[0] == 500 and statuses[-1] == 503
    assert health["status"] == "degraded"
    assert health["backend"]["circuit_breaker"] == "open"
    assert metrics["backend"]["retries"]["retried"] >= 2
    assert metrics["backend"]["circuit_breaker"]["fast_failures"] >= 1


async def test_request_of_a_departed_client_is_not_worked_on() -> None:
    """A queued request whose client disconnects is skipped: counted, never sent to the DB."""
    args = ["--workers", "1", "--error-rate", "0", "--quiet", *SLOW_QUERY]
    with ServerProcess(args) as server:
        host, port = server.url.removeprefix("http://").split(":")
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            first = asyncio.create_task(client.get("/api/v1/patients?id=P1"))
            await wait_in_flight(client, 1)
            _, writer = await asyncio.open_connection(host, int(port))
            writer.write(b"GET /api/v1/patients?id=GONE HTTP/1.1\r\nHost: x\r\n\r\n")
            await writer.drain()
            await wait_in_flight(client, 2)
            writer.close()
            await writer.wait_closed()
            assert (await first).status_code == 200
            for _ in range(200):
                metrics = (await client.get("/metrics")).json()
                if metrics["cancelled_requests"]:
                    break
                await asyncio.sleep(0.01)
    assert metrics["cancelled_requests"] == 1
    assert metrics["pattern_state"]["skipped_client_gone"] == 1
    assert metrics["backend"]["total_queries"] == 1
