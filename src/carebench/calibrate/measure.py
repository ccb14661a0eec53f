"""Driving a backend directly (no HTTP) at a fixed number of queries in flight.

Each level is a closed loop: `concurrency` tasks on one event loop, each issuing its next
query the moment the previous one returns, so exactly that many queries are at the backend at
all times. Queries completed during the warm-up, and each worker's first query, are not
counted. After the measured window no new query starts, and the ones in flight are awaited
(not cancelled) so that none of them still loads the database while the next level runs.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, TypedDict

import numpy as np

from carebench.backends.base import Backend
from carebench.backends.records import patient_id_for
from carebench.errors import BackendError, PatientNotFound

Timer = Callable[[], float]
#: Measuring stops once throughput has been this far below its peak ...
FALL_FRACTION = 0.10
#: ... at this many levels in a row: past the peak, higher levels only take longer.
FALL_LEVELS = 2


class LevelResult(TypedDict):
    """One concurrency level as measured; latencies are of the successful queries."""

    concurrency: int
    #: Queries that completed in the measured window (successes and failures).
    completed: int
    errors: int
    #: Of the errors, ids the database does not have (seeded with fewer patients).
    not_found: int
    duration_s: float
    #: Completed queries per second: a failed query took the database's time too.
    throughput: float
    mean_ms: float | None
    p10_ms: float | None
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    #: Whether the fit used this level (levels beyond the connection pool are not).
    fitted: bool


@dataclass(frozen=True, slots=True)
class LevelWindow:
    """How long a level runs: unmeasured warm-up, then the measured window."""

    warmup: float
    duration: float


class PatientIds:
    """Ids drawn uniformly from the seeded range, so a real database reads many rows."""

    def __init__(self, patients: int, seed: int | None = None) -> None:
        self._patients = patients
        self._rng = random.Random(seed)

    def next(self) -> str:
        return patient_id_for(self._rng.randrange(self._patients))


class _Completion(NamedTuple):
    finished: float
    #: None for a failed query.
    latency: float | None
    #: Whether it failed because the database lacks the id.
    missing: bool


class _Level:
    """One level's shared state: when its window opens and closes, and what it recorded.

    The window opens after the warm-up *and* once every worker has completed its first query:
    those first queries started while the others were still being launched, with fewer than
    `concurrency` at the backend, and at high concurrency they can outlast any fixed warm-up.
    """

    def __init__(self, concurrency: int, opens: float, duration: float) -> None:
        self.starting = concurrency
        self.opens = opens
        self.duration = duration
        self.start = math.inf
        self.end = math.inf
        self.completions: list[_Completion] = []

    def first_query_done(self, now: float) -> None:
        self.starting -= 1
        if self.starting == 0:
            self.start = max(now, self.opens)
            self.end = self.start + self.duration

    def in_window(self) -> list[_Completion]:
        return [done for done in self.completions if self.start <= done.finished <= self.end]


async def _worker(backend: Backend, ids: PatientIds, level: _Level, timer: Timer) -> None:
    first = True
    while (begin := timer()) < level.end:
        failure: Exception | None = None
        try:
            await backend.get_patient(ids.next())
        except (BackendError, PatientNotFound) as exc:
            failure = exc
        finished = timer()
        if first:
            first = False
            level.first_query_done(finished)
            continue
        latency = finished - begin if failure is None else None
        level.completions.append(
            _Completion(finished, latency, isinstance(failure, PatientNotFound))
        )


def _milliseconds(values: np.ndarray, percentile: float | None = None) -> float | None:
    if values.size == 0:
        return None
    value = np.mean(values) if percentile is None else np.percentile(values, percentile)
    return float(value) * 1000


async def measure_level(
    backend: Backend,
    concurrency: int,
    window: LevelWindow,
    ids: PatientIds,
    timer: Timer = time.perf_counter,
) -> LevelResult:
    """Run `concurrency` closed-loop workers for the window; the level's statistics."""
    level = _Level(concurrency, timer() + window.warmup, window.duration)
    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(_worker(backend, ids, level, timer))
    done = level.in_window()
    latencies = np.array([one.latency for one in done if one.latency is not None])
    return {
        "concurrency": concurrency,
        "completed": len(done),
        "errors": len(done) - latencies.size,
        "not_found": sum(one.missing for one in done),
        "duration_s": window.duration,
        "throughput": len(done) / window.duration,
        "mean_ms": _milliseconds(latencies),
        "p10_ms": _milliseconds(latencies, 10),
        "p50_ms": _milliseconds(latencies, 50),
        "p90_ms": _milliseconds(latencies, 90),
        "p99_ms": _milliseconds(latencies, 99),
        "fitted": False,
    }


def throughput_fell(results: Sequence[LevelResult]) -> bool:
    """Whether the last FALL_LEVELS levels all ran > FALL_FRACTION below the peak before them."""
    if len(results) <= FALL_LEVELS:
        return False
    peak = max(result["throughput"] for result in results[:-FALL_LEVELS])
    floor = peak * (1 - FALL_FRACTION)
    return all(result["throughput"] < floor for result in results[-FALL_LEVELS:])


async def measure_levels(
    backend: Backend,
    levels: Sequence[int],
    window: LevelWindow,
    ids: PatientIds,
    progress: Callable[[LevelResult], None] | None = None,
    timer: Timer = time.perf_counter,
) -> list[LevelResult]:
    """Each level in turn, stopping early once throughput has clearly fallen."""
    results: list[LevelResult] = []
    for concurrency in levels:
        results.append(await measure_level(backend, concurrency, window, ids, timer))
        if progress is not None:
            progress(results[-1])
        if throughput_fell(results):
            break
    return results
