"""workerpool: a free worker slot runs the query in the caller's task; the cap and FIFO hold."""

from __future__ import annotations

import asyncio

from carebench.models import Patient
from carebench.patterns.base import PatternConfig
from carebench.patterns.workerpool import WorkerPoolPattern
from tests.fakes import GatedBackend, id_of
from tests.patterns.conftest import query


class TaskRecordingBackend(GatedBackend):
    """A gated backend that also notes which task ran each query."""

    def __init__(self) -> None:
        super().__init__()
        self.tasks: dict[str, asyncio.Task[object] | None] = {}

    async def get_patient(self, patient_id: str, deadline: float | None = None) -> Patient:
        self.tasks[patient_id] = asyncio.current_task()
        return await super().get_patient(patient_id, deadline)


async def test_a_free_slot_runs_the_query_in_the_callers_task() -> None:
    """With a worker idle the query runs in the submitting task; once all are busy, in a worker."""
    backend = TaskRecordingBackend()
    pattern = WorkerPoolPattern(backend, PatternConfig(workers=1, queue_size=2))
    await pattern.start()
    first = asyncio.create_task(pattern.submit(query("A")))
    second = asyncio.create_task(pattern.submit(query("B")))
    await backend.wait_active(1)
    assert pattern.stats()["queued"] == 1
    backend.release()
    await asyncio.gather(first, second)
    await pattern.shutdown(drain_timeout=1.0)
    assert backend.tasks["A"] is first
    assert backend.tasks["B"] not in (first, second)


async def test_slots_stay_capped_and_queued_requests_run_in_arrival_order() -> None:
    """Never more queries than workers at once; a slot freed by the caller's task goes to the
    oldest queued request."""
    backend = GatedBackend()
    pattern = WorkerPoolPattern(backend, PatternConfig(workers=2, queue_size=4))
    await pattern.start()
    names = ["A", "B", "C", "D", "E", "F"]
    submitted = []
    for name in names:
        submitted.append(asyncio.create_task(pattern.submit(query(name))))
        await asyncio.sleep(0)
    await backend.wait_active(2)
    assert pattern.stats()["queued"] == 4
    backend.release()
    patients = await asyncio.gather(*submitted)
    await pattern.shutdown(drain_timeout=1.0)
    assert [id_of(patient) for patient in patients] == names
    assert backend.calls == names
    assert backend.peak_active == 2
