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
    restarts_during,
    restarts_in,
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


def test_a_group_document_gives_its_restart_counter() -> None:
    """`serve --processes N` answers processes_restarted: the sample keeps it; a single
    process's document (or a non-integer) leaves it out."""
    document = {
        "pattern_state": NAIVE_STATE,
        "backend": BACKEND,
        "process": {"rss_bytes": 5, "peak_rss_bytes": 6, "gc_collections": [0, 0, 0]},
        "processes_restarted": 2,
    }
    assert sample_from_metrics(cast(MetricsDocument, document))["processes_restarted"] == 2
    document["processes_restarted"] = True
    assert "processes_restarted" not in sample_from_metrics(cast(MetricsDocument, document))


def restarted(*counts: int) -> list[StateSample]:
    return [{"in_flight": 0, "processes_restarted": count} for count in counts]


def test_restarts_during_a_run_are_the_counters_increase() -> None:
    """From the first sample to the /metrics read after the run (else the last sample); a drop
    is a reset (the whole group restarted), counted as Prometheus's increase() counts it."""
    assert restarts_during(restarted(1, 1, 2), {"processes_restarted": 3}) == {
        "at_start": 1,
        "at_end": 3,
        "during_run": 2,
    }
    assert restarts_during(restarted(0, 1), None) == {"at_start": 0, "at_end": 1, "during_run": 1}
    assert restarts_during(restarted(4, 5, 0, 1), None) == {
        "at_start": 4,
        "at_end": 1,
        "during_run": 2,
    }
    assert restarts_during(restarted(4, 2), None) == {"at_start": 4, "at_end": 2, "during_run": 2}
    assert restarts_during([], {"processes_restarted": 0}) == {
        "at_start": 0,
        "at_end": 0,
        "during_run": 0,
    }


def test_no_restart_counter_means_no_restart_report() -> None:
    """A single process, the in-process mode or another --target server: None, not 0."""
    assert restarts_during([{"in_flight": 1}], {"pattern": "naive"}) is None
    assert restarts_during([], None) is None
    assert restarts_in({"processes_restarted": "1"}) is None


async def test_a_lost_connection_is_probed_again_at_once() -> None:
    """An OSError (the server process holding the probe's connection died) is followed by a
    second probe at once, not an interval later; a foreign document (ValueError) is not."""
    answers: list[StateSample | Exception] = [OSError("reset"), {"in_flight": 3}]
    calls: list[int] = []
    sampled = asyncio.Event()

    async def probe() -> StateSample:
        calls.append(len(calls))
        answer = answers.pop(0) if answers else ValueError("foreign")
        sampled.set()
        if isinstance(answer, Exception):
            raise answer
        return answer

    sampler = Sampler(probe, started=0.0, interval=3600.0, timer=lambda: 1.0)
    sampler.start()
    await sampled.wait()
    await sampler.stop()
    assert sampler.samples == [{"t": 1.0, "in_flight": 3}]
    assert (sampler.failures, len(calls)) == (1, 2)

    sampled.clear()
    foreign = Sampler(probe, started=0.0, interval=3600.0)
    foreign.start()
    await sampled.wait()
    await foreign.stop()
    assert (foreign.samples, foreign.failures, len(calls)) == ([], 1, 3)
