"""Server-state samples: the fields worth plotting, taken on a schedule, failures skipped."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest

from carebench.backends.base import BackendStats
from carebench.loadgen.sampler import (
    HttpMetricsProbe,
    Sampler,
    StateSample,
    in_process_probe,
    sample_from_metrics,
    sample_state,
)
from carebench.metrics.document import MetricsDocument
from carebench.patterns.stats import PatternStats

POOL_STATE: PatternStats = {
    "name": "workerpool",
    "in_flight": 7,
    "queued": 5,
    "queue_capacity": 100,
    "workers": 2,
    "workers_busy": 2,
    "object_pool": None,
}
NAIVE_STATE: PatternStats = {
    **POOL_STATE,
    "name": "naive",
    "queue_capacity": None,
    "workers": None,
    "workers_busy": None,
}
BACKEND: BackendStats = {
    "backend": "simulator",
    "total_queries": 9,
    "total_errors": 0,
    "active_queries": 3,
}


def test_sample_keeps_the_plotted_fields_and_drops_unknown_ones() -> None:
    """in_flight/queued/workers_busy/limit, RSS and the backend's active queries; None is absent."""
    assert sample_state(POOL_STATE, BACKEND, 1000) == {
        "in_flight": 7,
        "queued": 5,
        "workers_busy": 2,
        "rss_bytes": 1000,
        "db_active": 3,
    }
    assert sample_state(NAIVE_STATE, None, None) == {"in_flight": 7, "queued": 5}
    assert sample_state({**POOL_STATE, "limit": 40}, None, None)["limit"] == 40


def test_sample_from_a_metrics_document() -> None:
    """A /metrics document is sampled from its pattern, backend and process sections."""
    document = {
        "pattern_state": NAIVE_STATE,
        "backend": BACKEND,
        "process": {"rss_bytes": 5, "peak_rss_bytes": 6, "gc_collections": [0, 0, 0]},
    }
    # Only the sections the sampler reads; the request counters do not matter here.
    sample = sample_from_metrics(cast(MetricsDocument, document))
    assert sample == {"in_flight": 7, "queued": 5, "rss_bytes": 5, "db_active": 3}


def test_in_process_probe_reads_the_pattern_now() -> None:
    """The in-process probe samples the pattern's current state and this process's RSS."""
    busy: PatternStats = {**POOL_STATE, "in_flight": 1}
    states = iter([POOL_STATE, busy])
    probe = in_process_probe(lambda: next(states))
    first, second = probe(), probe()
    assert (first["in_flight"], second["in_flight"]) == (7, 1)
    assert first["rss_bytes"] > 0


async def test_sampler_stamps_samples_and_skips_failed_probes() -> None:
    """Samples carry seconds since the start; a probe that fails is counted, not recorded."""
    now = [10.0]
    answers: list[StateSample | OSError] = [{"in_flight": 1}, OSError("gone"), {"in_flight": 2}]
    answered = asyncio.Event()

    async def probe() -> StateSample:
        now[0] += 0.5
        if not answers:
            answered.set()
            return {"in_flight": 9}
        answer = answers.pop(0)
        if isinstance(answer, OSError):
            raise answer
        return answer

    sampler = Sampler(probe, started=10.0, interval=0.0, timer=lambda: now[0])
    sampler.start()
    await answered.wait()
    await sampler.stop()
    assert sampler.samples[:2] == [{"t": 0.5, "in_flight": 1}, {"t": 1.5, "in_flight": 2}]
    assert sampler.failures == 1


async def test_http_probe_refuses_a_foreign_metrics_document() -> None:
    """A --target whose /metrics is not carebench's (e.g. nginx) fails the probe, so the
    sampler skips it instead of ending the run with a KeyError."""
    body = b'{"status":"ok"}'
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)

    closed = asyncio.Event()

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await reader.read()  # until the probe closes its connection
        writer.close()
        await writer.wait_closed()
        closed.set()

    server = await asyncio.start_server(respond, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    probe = HttpMetricsProbe("127.0.0.1", port)
    try:
        with pytest.raises(ValueError, match="not a carebench metrics document"):
            await probe()
    finally:
        probe.close()
        await closed.wait()
        server.close()
        await server.wait_closed()
