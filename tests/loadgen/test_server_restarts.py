"""A load test against `serve --processes 2` whose process is killed during the run: the
report counts the replacement and warns, and the saved samples carry the counter."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from carebench.loadgen.sampler import restarts_during
from carebench.server.process import ServerProcess

pytestmark = pytest.mark.slow
SERVER = ["--processes", "2", "--db-profile", "ideal", "--min-latency", "1"]
SERVER += ["--max-latency", "1", "--error-rate", "0", "--quiet"]


async def wait_for(url: str, ready: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """Poll the JSON /metrics until `ready(document)` (readiness, not a fixed sleep)."""
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        for _ in range(2000):
            document: dict[str, Any] = (await client.get("/metrics")).json()
            if ready(document):
                return document
            await asyncio.sleep(0.005)
    raise AssertionError("the server never got there")


async def test_a_process_killed_during_a_loadtest_is_reported(tmp_path: Path) -> None:
    """kill -9 of one of two server processes once the load reaches them: the run's block
    says 1 process replaced, a warning names the run, and the samples step from 0 to 1."""
    server = ServerProcess(SERVER)
    server.start()
    output = tmp_path / "run.json"
    command = [sys.executable, "-m", "carebench", "loadtest", "--target", server.url]
    command += ["--duration", "3", "--concurrency", "4", "--output", str(output)]
    try:
        group = await wait_for(server.url, lambda d: d.get("process_count") == 2)
        loadtest = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        try:
            # Measuring and sampling begin with the first request: kill a little after it
            # (200 requests, tens of ms), when the run's first sample has read the counter at
            # 0. The parent replaces the process 0.25 s after the kill at the earliest.
            await wait_for(server.url, lambda d: d["total_requests"] >= 200)
            os.kill(group["processes"][0]["pid"], signal.SIGKILL)
            async with asyncio.timeout(60):
                out, err = await loadtest.communicate()
        finally:
            if loadtest.returncode is None:
                loadtest.kill()
                await loadtest.wait()
    finally:
        server.stop()
    text = out.decode()
    assert loadtest.returncode == 0, err.decode()
    assert "Restarts:         1 server process replaced during the run" in text, text
    assert "(processes_restarted 0 -> 1)" in text
    assert "WARNING: server processes died and were replaced during the run of" in text
    (result,) = json.loads(output.read_text())
    counts = [s["processes_restarted"] for s in result["server_samples"]]
    assert counts[0] == 0 and counts[-1] == 1 and counts == sorted(counts)
    assert restarts_during(result["server_samples"], result["server_metrics"]) == {
        "at_start": 0,
        "at_end": 1,
        "during_run": 1,
    }
    # The saved result states it too, for readers that do not recompute it from the samples.
    assert result["server_restarts"] == {"at_start": 0, "at_end": 1, "during_run": 1}
