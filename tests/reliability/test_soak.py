"""Soak: the server under steady load at 80 % of its capacity (open loop) keeps its memory,
open file descriptors, threads and event-loop tasks flat.

The pattern is the default one (`carebench serve` without --pattern). The database answers in
10-20 ms and never fails: ~670 requests/s of capacity through 20 workers, so the soak sends
~540/s, ~2,700 requests in the short run: many requests, so a small leak per request shows, at
a rate that leaves most of both cores to other work (~10 % of a core each for the server and
the generator). The capacity is measured first on the same server (load.measure_capacity:
open loop at 3x the database's peak, steady window); then the soak rate is sent for 0.5 s of
warm-up (connections opened, allocator grown), then for SOAK_SECONDS (5 s; 10 minutes with
CAREBENCH_RELIABILITY_LONG=1) while psutil samples the server every 0.5 s (RSS, open fds,
threads) and reads its asyncio task count from /metrics (process.asyncio_tasks). Samples
count from 0.5 s into the run (every connection open) to just before its last send.

Flat means: the median of the last third of the samples is within a bound of the median of
the first third (not just the two ends, which one allocation burst can move), and the spread
of fds and threads stays small. Bounds, for a busy 2-core machine:
- RSS drift <= 1.5 MiB short (measured 0.1 MiB; before fad52f6, 9.6 MiB: /metrics reads left
  HdrHistograms to a rarely-run collector), 16 MiB long. Tried: a leak of 1 KiB per request
  drifts ~1.8 MiB, 2 KiB ~3.4 MiB (both fail); a task or an fd leaked per request, thousands;
- fds: drift 0 and spread <= FD_SPREAD (measured 115 throughout: the generator's connections
  stay open; the samplers' own /metrics connections come and go);
- threads: drift 0 and spread <= THREAD_SPREAD (measured 2 throughout);
- asyncio tasks: drift <= TASK_DRIFT (measured 33-37: the requests in flight come and go; one
  leaked per request drifts ~1,700 in the short run);
- no request fails (no 5xx, timeout or connection error); refusals are counted.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import pytest

from carebench.cli.serve import ServeChoice
from carebench.loadgen.config import LoadConfig
from carebench.loadgen.results import LoadTestResult
from carebench.server.process import ServerProcess
from tests.reliability.conftest import Figures, long_runs
from tests.reliability.load import (
    MIB,
    ProcessSample,
    ProcessSampler,
    database_args,
    database_peak_per_second,
    drive,
    measure_capacity,
    metrics,
    thirds,
)

PART = "soak"
pytestmark = pytest.mark.slow

MIN_LATENCY, MAX_LATENCY = 0.010, 0.020
SERVER_ARGS = [*database_args(MIN_LATENCY, MAX_LATENCY), "--quiet"]
PATTERN = ServeChoice().pattern
LOAD_SHARE = 0.8
CONNECTIONS = 100
WARMUP_SECONDS = 0.5
SOAK_SECONDS = 600.0 if long_runs() else 5.0
SAMPLE_INTERVAL = 0.5
RSS_DRIFT_MIB = 16.0 if long_runs() else 1.5
FD_SPREAD = 4
THREAD_SPREAD = 1
TASK_DRIFT = 25


@dataclass(frozen=True, slots=True)
class Soak:
    """What the soak run measured: its load result and the server's samples during it."""

    capacity: float
    rate: float
    result: LoadTestResult
    samples: list[ProcessSample]

    @property
    def rss(self) -> tuple[float, float]:
        return thirds([sample.rss for sample in self.samples])

    @property
    def rss_drift_mib(self) -> float:
        first, last = self.rss
        return (last - first) / MIB

    def drift(self, values: list[int]) -> float:
        first, last = thirds(values)
        return last - first

    @property
    def fds(self) -> list[int]:
        return [sample.fds for sample in self.samples]

    @property
    def threads(self) -> list[int]:
        return [sample.threads for sample in self.samples]

    @property
    def tasks(self) -> list[int]:
        return [sample.tasks for sample in self.samples if sample.tasks is not None]

    def record(self, figures: Figures) -> None:
        result = self.result
        first, last = self.rss
        figures.add(
            pattern=PATTERN,
            seconds=SOAK_SECONDS,
            capacity_per_second=round(self.capacity, 1),
            offered_per_second=round(self.rate, 1),
            requests=result["total_requests"],
            goodput_per_second=result["goodput_per_second"],
            rejected=result["rejected_requests"],
            errors=result["error_requests"],
            samples=len(self.samples),
            rss_first_third_mib=round(first / MIB, 2),
            rss_last_third_mib=round(last / MIB, 2),
            rss_drift_mib=round(self.rss_drift_mib, 2),
            rss_drift_bound_mib=RSS_DRIFT_MIB,
            fds_min=min(self.fds),
            fds_max=max(self.fds),
            fds_drift=self.drift(self.fds),
            threads_min=min(self.threads),
            threads_max=max(self.threads),
            tasks_min=min(self.tasks),
            tasks_max=max(self.tasks),
            tasks_drift=self.drift(self.tasks),
        )


def soak(figures: Figures) -> Soak:
    """Capacity, warm-up, then the soak with the server sampled; its figures recorded."""
    with ServerProcess(["--pattern", PATTERN, *SERVER_ARGS]) as server:
        peak = database_peak_per_second(MIN_LATENCY, MAX_LATENCY)
        capacity = measure_capacity(server.url, PATTERN, peak)
        rate = round(LOAD_SHARE * capacity)
        drive(server.url, PATTERN, steady(rate, WARMUP_SECONDS))

        def tasks() -> int:
            return metrics(server.url)["process"]["asyncio_tasks"]

        with ProcessSampler(server.pid, SAMPLE_INTERVAL, tasks) as sampler:
            result = drive(server.url, PATTERN, steady(rate, SOAK_SECONDS))
    # While the soak rate is sent, its connections open: from 0.5 s (they all open within
    # ~0.2 s) to just before the last send (the sampler starts just before the run).
    run = Soak(capacity, rate, result, sampler.between(0.5, SOAK_SECONDS - 0.25))
    run.record(figures)
    return run


def steady(rate: float, seconds: float) -> LoadConfig:
    return LoadConfig(concurrency=CONNECTIONS, rate=rate, duration=seconds)


@pytest.mark.timeout(SOAK_SECONDS + 120)  # the suite's default (120 s) is shorter than a long soak
def test_steady_load_keeps_memory_fds_threads_and_tasks_flat(figures: Figures) -> None:
    """At 80 % of capacity for the whole soak: RSS, fds, threads and asyncio tasks stay flat
    (last third against first third), and no request fails."""
    run = soak(figures)
    seen = figures.values
    assert len(run.samples) >= 9, seen
    assert run.result["error_requests"] == 0, seen
    assert run.rss_drift_mib <= RSS_DRIFT_MIB, seen
    assert run.drift(run.fds) == 0 and max(run.fds) - min(run.fds) <= FD_SPREAD, seen
    assert run.drift(run.threads) == 0, seen
    assert max(run.threads) - min(run.threads) <= THREAD_SPREAD, seen
    assert len(run.tasks) == len(run.samples) and run.drift(run.tasks) <= TASK_DRIFT, seen
    assert statistics.median(run.tasks) > 0, seen
