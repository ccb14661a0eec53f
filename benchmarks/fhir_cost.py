"""What a FHIR read costs against the legacy read, in process (no HTTP, no wrk).

Drives CareBenchApp directly with a zero-latency simulator behind the naive pattern, so what
is timed is the app's own work per request: routing, validation, the pattern and backend
calls, building and encoding the body. Several runs of calibrated loops; median and spread.

    flock /tmp/carebench-bench.lock .venv/bin/python benchmarks/fhir_cost.py
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import MutableMapping
from typing import Any

from carebench.backends.simulator import SimulatedBackend, SimulatorConfig
from carebench.patterns.base import PatternConfig, create_pattern
from carebench.server.app import CareBenchApp

#: (label, path, query string); ids from the seeded range so every request finds a patient.
REQUESTS = {
    "legacy": ("/api/v1/patients", b"id=P00042"),
    "fhir-read": ("/fhir/Patient/P00042", b""),
    "fhir-search-1": ("/fhir/Patient", b"_id=P00042"),
    "fhir-search-10": ("/fhir/Patient", b"_id=" + b",".join(b"P%05d" % i for i in range(10))),
    "fhir-everything": ("/fhir/Patient/P00042/$everything", b""),
}
RUNS = 7
LOOPS = 20_000


def _scope(path: str, query: bytes) -> dict[str, Any]:
    return {
        "type": "http",
        "method": "GET",
        "path": path,
        "query_string": query,
        "headers": [(b"host", b"127.0.0.1:8080")],
        "scheme": "http",
        "server": ("127.0.0.1", 8080),
    }


class _Cycle:
    """uvicorn's request cycle as the app sees it: a `disconnected` flag beside `receive`, so
    the app reads the flag instead of starting a watcher task (its path under uvicorn)."""

    disconnected = False

    async def receive(self) -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}


async def _measure(app: CareBenchApp, path: str, query: bytes) -> list[float]:
    scope = _scope(path, query)
    receive = _Cycle().receive
    statuses: list[int] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    for _ in range(LOOPS // 10):  # warm-up
        await app(scope, receive, send)
    per_request = []
    for _ in range(RUNS):
        statuses.clear()
        started = time.perf_counter()
        for _ in range(LOOPS):
            await app(scope, receive, send)
        per_request.append((time.perf_counter() - started) / LOOPS * 1e6)
        assert set(statuses) == {200}, f"{path}: statuses {set(statuses)}"
    return per_request


async def main() -> None:
    config = SimulatorConfig(min_latency=0, max_latency=0, error_rate=0, profile="ideal", seed=1)
    backend = SimulatedBackend(config)
    app = CareBenchApp(create_pattern("naive", backend, PatternConfig()), backend)
    await app.startup()
    results = {label: await _measure(app, path, query) for label, (path, query) in REQUESTS.items()}
    await app.shutdown()
    legacy = statistics.median(results["legacy"])
    print(f"{'request':<18}{'us/request':>12}{'stdev':>8}{'x legacy':>10}")
    for label, samples in results.items():
        median = statistics.median(samples)
        spread = statistics.stdev(samples)
        warn = "  (spread >= 10%: noisy)" if spread >= 0.1 * median else ""
        print(f"{label:<18}{median:>12.2f}{spread:>8.2f}{median / legacy:>10.2f}{warn}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        REQUESTS = {label: REQUESTS[label] for label in sys.argv[1:]}
    asyncio.run(main())
