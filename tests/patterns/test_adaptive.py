"""The adaptive pattern learns its limit from latency and errors (fake backend, manual clock)."""

from __future__ import annotations

import asyncio

import pytest

from carebench.errors import BackendError, DeadlineExceeded, PatientNotFound, Rejected
from carebench.loop_clock import ManualLoopClock
from carebench.models import Patient
from carebench.patterns.adaptive import AdaptivePattern
from carebench.patterns.base import PatternConfig
from tests.fakes import GatedBackend
from tests.patterns.conftest import query


async def run_round(
    pattern: AdaptivePattern,
    backend: GatedBackend,
    loop_clock: ManualLoopClock,
    rtt: float,
    fail: bool,
) -> None:
    """`limit` concurrent requests that all take `rtt` on the manual clock."""
    backend.gate = asyncio.Event()
    ids = [f"R{i}" for i in range(pattern.limit)]
    backend.fail_ids = set(ids) if fail else set()
    tasks = [asyncio.create_task(pattern.submit(query(pid))) for pid in ids]
    await backend.wait_active(len(ids))
    loop_clock.advance(rtt)
    backend.release()
    await asyncio.gather(*tasks, return_exceptions=True)


def adaptive(algorithm: str) -> tuple[AdaptivePattern, GatedBackend, ManualLoopClock]:
    loop_clock, backend = ManualLoopClock(), GatedBackend()
    config = PatternConfig(limit_algorithm=algorithm)
    return AdaptivePattern(backend, config, loop_clock), backend, loop_clock


@pytest.mark.parametrize("algorithm", ["gradient2", "aimd", "vegas"])
async def test_limit_rises_while_latency_stays_flat(algorithm: str) -> None:
    """A fully used limit with flat latency grows."""
    pattern, backend, loop_clock = adaptive(algorithm)
    start = pattern.limit
    for _ in range(15):
        await run_round(pattern, backend, loop_clock, 0.05, fail=False)
    assert pattern.limit > start
    assert pattern.stats()["min_rtt_ms"] == pytest.approx(50.0)


@pytest.mark.parametrize("algorithm", ["gradient2", "vegas"])
async def test_limit_falls_when_latency_inflates(algorithm: str) -> None:
    """After learning a flat RTT, a 10x slower backend shrinks the limit at once."""
    pattern, backend, loop_clock = adaptive(algorithm)
    for _ in range(15):
        await run_round(pattern, backend, loop_clock, 0.05, fail=False)
    grown = pattern.limit
    await run_round(pattern, backend, loop_clock, 0.5, fail=False)
    assert pattern.limit < grown / 2
    assert pattern.stats()["sample_rtt_ms"] == pytest.approx(500.0)


async def test_gradient2_cuts_when_a_standing_queue_doubles_latency() -> None:
    """After a flat 100 ms, rounds at 200 ms (a standing queue) cut the limit and keep it cut:
    the long-term RTT is a baseline, not the average of the last few hundred requests (which
    learnt the 200 ms from a round's first half, so the limit stayed at 200)."""
    pattern, backend, loop_clock = adaptive("gradient2")
    for _ in range(15):
        await run_round(pattern, backend, loop_clock, 0.1, fail=False)
    grown = pattern.limit
    for _ in range(10):
        await run_round(pattern, backend, loop_clock, 0.2, fail=False)
    assert pattern.limit < grown / 4
    assert pattern.stats()["algorithm"]["long_rtt_ms"] < 150


class DeadlineBackend(GatedBackend):
    """A gated backend whose failing ids miss their deadline instead of failing."""

    async def get_patient(self, patient_id: str, deadline: float | None = None) -> Patient:
        try:
            return await super().get_patient(patient_id, deadline)
        except BackendError:
            raise DeadlineExceeded(patient_id) from None


class NotFoundBackend(GatedBackend):
    """A gated backend that knows none of the patients it is asked for."""

    async def get_patient(self, patient_id: str, deadline: float | None = None) -> Patient:
        await super().get_patient(patient_id, deadline)
        raise PatientNotFound(patient_id)


@pytest.mark.parametrize("algorithm", ["aimd", "vegas"])
async def test_limit_falls_when_requests_miss_their_deadline(algorithm: str) -> None:
    """Requests past their deadline count as drops (Netflix's timeouts) and shrink the limit."""
    loop_clock, backend = ManualLoopClock(), DeadlineBackend()
    pattern = AdaptivePattern(backend, PatternConfig(limit_algorithm=algorithm), loop_clock)
    for _ in range(15):
        await run_round(pattern, backend, loop_clock, 0.05, fail=False)
    grown = pattern.limit
    await run_round(pattern, backend, loop_clock, 0.05, fail=True)
    assert pattern.limit < grown


@pytest.mark.parametrize("algorithm", ["gradient2", "aimd", "vegas"])
async def test_database_errors_teach_the_limit_nothing(algorithm: str) -> None:
    """A failed query is not fed at all (Netflix's "ignore"): neither a drop that cuts the
    limit nor a round-trip time, so a round of slow failures leaves limit and RTT as they were."""
    pattern, backend, loop_clock = adaptive(algorithm)
    for _ in range(15):
        await run_round(pattern, backend, loop_clock, 0.05, fail=False)
    grown, stats = pattern.limit, pattern.stats()
    await run_round(pattern, backend, loop_clock, 5.0, fail=True)
    assert pattern.limit == grown
    assert pattern.stats()["sample_rtt_ms"] == stats["sample_rtt_ms"] == pytest.approx(50.0)
    assert pattern.stats()["in_flight"] == 0


async def test_a_patient_not_found_is_a_sample_like_any_answer() -> None:
    """A 404 comes from a query that ran: its round-trip time is fed to the algorithm."""
    loop_clock, backend = ManualLoopClock(), NotFoundBackend()
    pattern = AdaptivePattern(backend, PatternConfig(), loop_clock)
    await run_round(pattern, backend, loop_clock, 0.08, fail=False)
    assert pattern.stats()["sample_rtt_ms"] == pytest.approx(80.0)
    assert pattern.stats()["in_flight"] == 0


async def test_requests_beyond_the_limit_are_rejected_at_once() -> None:
    """With the limit in use, the next request is a 503-style rejection, counted."""
    pattern, backend, _ = adaptive("gradient2")
    held = [asyncio.create_task(pattern.submit(query(f"P{i}"))) for i in range(pattern.limit)]
    await backend.wait_active(pattern.limit)
    with pytest.raises(Rejected, match="adaptive concurrency limit"):
        await pattern.submit(query("P-over"))
    assert pattern.stats()["rejected_at_limit"] == 1
    backend.release()
    await asyncio.gather(*held)
