"""Samples the server's own state (/metrics, or the pattern in-process) while a run goes."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import msgspec

from carebench.loadgen.client import HttpConnection
from carebench.metrics.process import rss_bytes

SAMPLE_INTERVAL = 0.25
#: The pattern-state fields worth plotting next to the client's view.
STATE_FIELDS = ("in_flight", "queued", "workers_busy", "limit")


def sample_from_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """The interesting part of a /metrics document (missing fields are simply absent)."""
    state = metrics.get("pattern_state") or {}
    sample = {key: state[key] for key in STATE_FIELDS if state.get(key) is not None}
    process = metrics.get("process") or {}
    if "rss_bytes" in process:
        sample["rss_bytes"] = process["rss_bytes"]
    backend = metrics.get("backend") or {}
    if "active_queries" in backend:
        sample["db_active"] = backend["active_queries"]
    return sample


class Sampler:
    """Collects samples every `interval` seconds until stopped; a failed probe is skipped."""

    def __init__(
        self,
        probe: Callable[[], Any],
        started: float,
        interval: float = SAMPLE_INTERVAL,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._probe = probe
        self._started = started
        self._interval = interval
        self._clock = clock
        self.samples: list[dict[str, Any]] = []
        self.failures = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                value = self._probe()
                if asyncio.iscoroutine(value):
                    value = await value
            except (OSError, ValueError, msgspec.DecodeError):
                self.failures += 1
            else:
                sample = {"t": round(self._clock() - self._started, 3), **value}
                self.samples.append(sample)
            await asyncio.sleep(self._interval)


class HttpMetricsProbe:
    """GET /metrics on a dedicated connection (so it never waits behind load requests)."""

    def __init__(self, host: str, port: int, base_path: str = "") -> None:
        self._host, self._port, self._path = host, port, base_path + "/metrics"
        self._connection: HttpConnection | None = None

    async def __call__(self) -> dict[str, Any]:
        if self._connection is None or self._connection.closed:
            self._connection = await HttpConnection.open(self._host, self._port)
        response = await self._connection.get(self._path)
        if response.status != 200:
            raise ValueError(f"/metrics answered {response.status}")
        return sample_from_metrics(msgspec.json.decode(response.body))

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()


def in_process_probe(pattern_stats: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    """Samples a pattern running in this process."""

    def probe() -> dict[str, Any]:
        return sample_from_metrics(
            {"pattern_state": pattern_stats(), "process": {"rss_bytes": rss_bytes()}}
        )

    return probe
