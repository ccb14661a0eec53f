"""Samples the server's own state (/metrics, or the pattern in-process) while a run goes."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Literal, TypedDict

import msgspec

from carebench.backends.base import BackendStats
from carebench.loadgen.client import HttpConnection
from carebench.metrics.document import MetricsDocument
from carebench.metrics.process import rss_bytes
from carebench.patterns.stats import PatternStats

SAMPLE_INTERVAL = 0.25
StateField = Literal["in_flight", "queued", "workers_busy", "limit"]
#: The pattern-state fields worth plotting next to the client's view.
STATE_FIELDS: tuple[StateField, ...] = ("in_flight", "queued", "workers_busy", "limit")


class StateSample(TypedDict, total=False):
    """The server's state at one moment; a field the server does not report is absent."""

    in_flight: int
    queued: int
    workers_busy: int
    limit: int
    rss_bytes: int
    #: The backend's queries in progress.
    db_active: int
    #: `serve --processes N`: processes the parent has replaced since it started (a counter;
    #: absent from a single process's /metrics).
    processes_restarted: int


class ServerSample(StateSample):
    """A state sample and when it was taken (seconds since measuring began)."""

    t: float


def sample_state(
    pattern: PatternStats, backend: BackendStats | None, rss: int | None
) -> StateSample:
    """The fields of the server's state worth plotting (missing ones are simply absent)."""
    sample: StateSample = {}
    for key in STATE_FIELDS:
        value = pattern.get(key)
        if value is not None:
            sample[key] = value
    if rss is not None:
        sample["rss_bytes"] = rss
    if backend is not None and "active_queries" in backend:
        sample["db_active"] = backend["active_queries"]
    return sample


def sample_from_metrics(metrics: MetricsDocument) -> StateSample:
    """The interesting part of a /metrics document (a group's counts its restarts too)."""
    sample = sample_state(
        metrics["pattern_state"], metrics["backend"], metrics["process"]["rss_bytes"]
    )
    restarted = restarts_in(metrics)
    if restarted is not None:
        sample["processes_restarted"] = restarted
    return sample


class ServerRestarts(TypedDict):
    """How many server processes `serve --processes N` replaced while a run went, from its
    `processes_restarted` counter when measuring began and when it ended."""

    at_start: int
    at_end: int
    #: The counter's increase; a drop (the whole group restarted) counts as a reset, as
    #: Prometheus's increase() counts one.
    during_run: int


def restarts_in(metrics: Mapping[str, object] | None) -> int | None:
    """A /metrics document's `processes_restarted`, None when it has none (one process, or
    a --target that is not a carebench group)."""
    value = (metrics or {}).get("processes_restarted")
    return value if type(value) is int else None


def restarts_during(
    samples: Sequence[StateSample], final_metrics: Mapping[str, object] | None
) -> ServerRestarts | None:
    """The restart counter over a run: from its first sample to the server's /metrics read
    after the run (or the last sample). None when the server has no such counter.

    Without it, a run that lost a process shows only a gap: the requests the dead process
    held failed or were reset, and the server's totals lost its counts."""
    counts = [
        sample["processes_restarted"] for sample in samples if "processes_restarted" in sample
    ]
    end = restarts_in(final_metrics)
    if end is not None:
        counts.append(end)
    if not counts:
        return None
    increase = sum(b - a if b >= a else b for a, b in itertools.pairwise(counts))
    return {"at_start": counts[0], "at_end": counts[-1], "during_run": increase}


class Sampler:
    """Collects samples every `interval` seconds until stopped; a failed probe is skipped."""

    def __init__(
        self,
        probe: Callable[[], StateSample | Awaitable[StateSample]],
        started: float,
        interval: float = SAMPLE_INTERVAL,
        timer: Callable[[], float] = time.perf_counter,  # the Engine's Timer: `started` is on it
    ) -> None:
        self._probe = probe
        self._started = started
        self._interval = interval
        self._timer = timer
        self.samples: list[ServerSample] = []
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
            state = await self._sample()
            if state is not None:
                self.samples.append({"t": round(self._timer() - self._started, 3), **state})
            await asyncio.sleep(self._interval)

    async def _sample(self) -> StateSample | None:
        """One probe, tried again at once after a connection failure: a server process that
        died (`serve --processes`) took the probe's connection with it, and a new one reaches
        a living process. Without the retry the first sample of a run could come after the
        dead process's replacement, and the restart would go uncounted."""
        for _ in range(2):
            try:
                value = self._probe()
                return await value if inspect.isawaitable(value) else value
            except OSError:
                self.failures += 1
            except (ValueError, msgspec.DecodeError):
                self.failures += 1
                return None
        return None


class HttpMetricsProbe:
    """GET /metrics on a dedicated connection (so it never waits behind load requests)."""

    def __init__(
        self,
        host: str,
        port: int,
        base_path: str = "",
        tls: ssl.SSLContext | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self._host, self._port, self._path = host, port, base_path + "/metrics"
        self._tls = tls
        #: The --token's Authorization: a server with --auth wants it beyond loopback.
        self._headers = dict(headers or {})
        self._connection: HttpConnection | None = None

    async def __call__(self) -> StateSample:
        if self._connection is None or self._connection.closed:
            self._connection = await HttpConnection.open(self._host, self._port, tls=self._tls)
        response = await self._connection.get(self._path, self._headers)
        if response.status != 200:
            raise ValueError(f"/metrics answered {response.status}")
        document: MetricsDocument = msgspec.json.decode(response.body)
        try:
            return sample_from_metrics(document)
        except (KeyError, TypeError):
            # A --target may be any server (nginx in benchmarks/client_vs_wrk.py): no samples.
            raise ValueError("/metrics is not a carebench metrics document") from None

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()


def in_process_probe(pattern_stats: Callable[[], PatternStats]) -> Callable[[], StateSample]:
    """Samples a pattern running in this process."""

    def probe() -> StateSample:
        return sample_state(pattern_stats(), None, rss_bytes())

    return probe
