"""The semaphore pattern: a hard cap on requests in flight, with an optional short wait."""

from __future__ import annotations

import asyncio
import random

import pytest

from carebench.errors import Rejected
from carebench.models import Patient
from carebench.patterns.base import PatternConfig
from carebench.patterns.semaphore import SemaphorePattern
from tests.fakes import GatedBackend, id_of
from tests.patterns.conftest import query


class JitteryBackend(GatedBackend):
    """Answers after a random number of event-loop turns, so completions interleave."""

    def __init__(self, seed: int) -> None:
        super().__init__(open_gate=True)
        self._rng = random.Random(seed)

    async def get_patient(self, patient_id: str, deadline: float | None = None) -> Patient:
        self.active += 1
        self.peak_active = max(self.peak_active, self.active)
        try:
            for _ in range(self._rng.randrange(5)):
                await asyncio.sleep(0)
        finally:
            self.active -= 1
        return await super().get_patient(patient_id, deadline)


async def test_never_exceeds_its_limit_under_churn() -> None:
    """Hundreds of waiting requests never push the backend past --limit, and all are served."""
    backend = JitteryBackend(seed=2)
    pattern = SemaphorePattern(backend, PatternConfig(limit=3, max_wait=5.0))
    ids = [f"P{i}" for i in range(300)]
    results = await asyncio.gather(*(pattern.submit(query(patient_id)) for patient_id in ids))
    # Most waited for a permit (so the hand-over is what is exercised), none was turned away,
    # and each got its own record from exactly one backend query.
    assert pattern.stats()["waited_for_permit"] > 200
    assert pattern.stats()["rejected_at_limit"] == 0
    assert [id_of(patient) for patient in results] == ids
    assert sorted(backend.calls) == sorted(ids)
    assert backend.peak_active == 3
    assert pattern.stats()["peak_in_flight"] == 3


async def test_without_max_wait_the_excess_is_rejected_at_once() -> None:
    """At the limit and with no wait allowed, the next request is rejected immediately."""
    backend = GatedBackend()
    pattern = SemaphorePattern(backend, PatternConfig(limit=1))
    held = asyncio.create_task(pattern.submit(query("P1")))
    await backend.wait_active(1)
    with pytest.raises(Rejected, match="concurrency limit"):
        await pattern.submit(query("P2"))
    backend.release()
    await held


async def test_a_freed_permit_goes_to_the_waiter() -> None:
    """With --max-wait, a request waits for a permit and gets it when one frees up."""
    backend = GatedBackend()
    pattern = SemaphorePattern(backend, PatternConfig(limit=1, max_wait=5.0))
    first = asyncio.create_task(pattern.submit(query("P1")))
    await backend.wait_active(1)
    second = asyncio.create_task(pattern.submit(query("P2")))
    await asyncio.sleep(0)
    assert pattern.stats()["queued"] == 1
    backend.release()
    assert [id_of(p) for p in await asyncio.gather(first, second)] == ["P1", "P2"]
    assert pattern.stats()["waited_for_permit"] == 1


async def test_waiting_longer_than_max_wait_is_rejected() -> None:
    """A waiter that gets no permit within --max-wait is rejected and leaves the queue."""
    backend = GatedBackend()
    pattern = SemaphorePattern(backend, PatternConfig(limit=1, max_wait=0.02))
    held = asyncio.create_task(pattern.submit(query("P1")))
    await backend.wait_active(1)
    with pytest.raises(Rejected, match="no permit"):
        await pattern.submit(query("P2"))
    assert pattern.stats()["queued"] == 0
    backend.release()
    await held
    assert pattern.stats()["in_flight"] == 0
