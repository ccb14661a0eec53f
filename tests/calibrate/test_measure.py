"""The closed-loop driver: exactly N queries in flight, first queries and warm-up not counted,
everything drained between levels, errors counted apart, early stop once throughput falls."""

from __future__ import annotations

import asyncio

import pytest

from carebench.backends.base import BackendHealth, BackendStats
from carebench.backends.records import synthetic_patient
from carebench.backends.simulator import SimulatedBackend, SimulatorConfig
from carebench.calibrate.measure import (
    LevelResult,
    LevelWindow,
    PatientIds,
    measure_level,
    measure_levels,
    throughput_fell,
)
from carebench.errors import BackendError, PatientNotFound
from carebench.models import Patient
from tests.fakes import PatientLookups

WINDOW = LevelWindow(warmup=0.0, duration=0.1)


class CountingBackend(PatientLookups):
    """A backend that sleeps `latency`, records how many queries ran at once, and fails for
    the ids it is told to."""

    name = "counting"

    def __init__(self, latency: float = 0.002, failing: frozenset[str] = frozenset()) -> None:
        self.latency = latency
        self.failing = failing
        self.missing: frozenset[str] = frozenset()
        self.active = 0
        self.peak = 0
        self.ids: list[str] = []

    async def get_patient(self, patient_id: str, deadline: float | None = None) -> Patient:
        self.active += 1
        self.peak = max(self.peak, self.active)
        self.ids.append(patient_id)
        try:
            await asyncio.sleep(self.latency)
            if patient_id in self.missing:
                raise PatientNotFound(patient_id)
            if patient_id in self.failing:
                raise BackendError("injected")
            return synthetic_patient(patient_id)
        finally:
            self.active -= 1

    def health(self) -> BackendHealth:
        return {"status": "healthy", "backend": self.name, "total_queries": 0, "total_errors": 0}

    def stats(self) -> BackendStats:
        return {"backend": self.name, "total_queries": 0, "total_errors": 0}

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass


def level(concurrency: int, throughput: float) -> LevelResult:
    return {
        "concurrency": concurrency, "completed": 1, "errors": 0, "not_found": 0,
        "duration_s": 1.0, "throughput": throughput, "mean_ms": 1.0, "p10_ms": 1.0,
        "p50_ms": 1.0, "p90_ms": 1.0, "p99_ms": 1.0, "fitted": False,
    }  # fmt: skip


async def test_runs_exactly_the_level_and_drains_before_returning() -> None:
    """N workers keep N queries in flight, never more, and none is left running afterwards."""
    backend = CountingBackend()

    result = await measure_level(backend, 8, WINDOW, PatientIds(100, seed=1))

    assert backend.peak == 8
    assert backend.active == 0
    assert result["concurrency"] == 8
    assert result["completed"] > 8
    assert result["throughput"] == result["completed"] / WINDOW.duration
    assert result["errors"] == 0
    percentiles = [result[key] or 0.0 for key in ("p10_ms", "p50_ms", "p90_ms", "p99_ms")]
    assert result["mean_ms"] is not None and result["mean_ms"] >= 2.0
    assert percentiles[0] >= 2.0 and percentiles == sorted(percentiles)


async def test_ids_are_uniform_over_the_seeded_range_and_reproducible() -> None:
    """Ids come from P00000..P{N-1}, spread over the range; the same seed draws the same ids."""
    first, second = PatientIds(50, seed=7), PatientIds(50, seed=7)
    drawn = [first.next() for _ in range(2000)]

    assert drawn == [second.next() for _ in range(2000)]
    assert set(drawn) == {f"P{index:05d}" for index in range(50)}


async def test_failures_are_counted_apart_from_latencies() -> None:
    """A BackendError or a missing id is an error; only successes contribute latency."""
    ids = [f"P{index:05d}" for index in range(4)]
    backend = CountingBackend(failing=frozenset(ids[:2]))
    backend.missing = frozenset(ids[2:3])

    result = await measure_level(backend, 4, WINDOW, PatientIds(4, seed=3))

    assert result["errors"] > result["not_found"] > 0
    assert result["completed"] > result["errors"]
    assert result["errors"] == pytest.approx(0.75 * result["completed"], rel=0.35)


async def test_counted_queries_ran_with_every_worker_in_flight() -> None:
    """The first queries, started while workers were still being launched (fewer at once, so
    faster), are left out: the mean latency is the one at the full level."""
    config = SimulatorConfig(
        min_latency=0.005, max_latency=0.005, error_rate=0.0, contention=0.0, coherency=0.5
    )
    backend = SimulatedBackend(config)
    full_level = 0.005 * config.slowdown(8)  # 145 ms; the first queries took 5 ms to 110 ms

    result = await measure_level(backend, 8, LevelWindow(0.0, 0.3), PatientIds(100, seed=1))

    assert result["mean_ms"] is not None and result["p10_ms"] is not None
    assert result["mean_ms"] >= 0.99 * full_level * 1000
    assert result["p10_ms"] >= 0.99 * full_level * 1000


@pytest.mark.parametrize(
    ("throughputs", "fell"),
    [
        ([10, 20, 30], False),
        ([10, 20, 17, 17], True),
        ([10, 20, 17, 19], False),
        ([10, 20, 18.5, 17], False),
        ([10, 20, 17], False),
        ([20, 17], False),
    ],
)
def test_throughput_has_fallen_after_two_levels_clearly_below_the_peak(throughputs, fell):
    """Two levels in a row more than 10 % under the best before them; one is not enough."""
    results = [level(2**i, value) for i, value in enumerate(throughputs)]

    assert throughput_fell(results) is fell


async def test_levels_stop_once_throughput_has_clearly_fallen() -> None:
    """Past the peak, the higher levels are skipped; each measured level is reported."""
    config = SimulatorConfig(
        min_latency=0.005, max_latency=0.005, error_rate=0.0, contention=0.5, coherency=0.2
    )
    reported: list[int] = []

    results = await measure_levels(
        SimulatedBackend(config), (1, 2, 4, 8, 16, 32), LevelWindow(0.0, 0.1),
        PatientIds(100, seed=1), lambda result: reported.append(result["concurrency"]),
    )  # fmt: skip

    assert [result["concurrency"] for result in results] == [1, 2, 4, 8]
    assert reported == [1, 2, 4, 8]
