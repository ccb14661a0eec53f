"""Priority classes: critical before standard before batch, no starvation, batch shed first."""

from __future__ import annotations

import asyncio

import pytest

from carebench.errors import Rejected
from carebench.models import PRIORITY_RANK, Query
from carebench.patterns.base import PatternConfig
from carebench.patterns.priority import ClassQueue
from carebench.patterns.workerpool import WorkerPoolPattern
from tests.fakes import GatedBackend, id_of

CRITICAL, STANDARD, BATCH = (PRIORITY_RANK[name] for name in ("critical", "standard", "batch"))


def test_urgent_classes_are_served_first_fifo_within_a_class() -> None:
    """pop() drains critical, then standard, then batch, each in arrival order."""
    queue: ClassQueue[str] = ClassQueue(capacity=10, fairness_period=100)
    for item, rank in [
        ("b1", BATCH),
        ("s1", STANDARD),
        ("c1", CRITICAL),
        ("s2", STANDARD),
        ("c2", CRITICAL),
        ("b2", BATCH),
    ]:
        assert queue.push(item, rank) == (True, None)
    assert [queue.pop() for _ in range(6)] == ["c1", "c2", "s1", "s2", "b1", "b2"]


def test_batch_is_not_starved() -> None:
    """Under a steady stream of critical work, a waiting batch item is served within a period."""
    queue: ClassQueue[str] = ClassQueue(capacity=100, fairness_period=4)
    queue.push("batch", BATCH)
    served = []
    for i in range(8):
        queue.push(f"c{i}", CRITICAL)
        served.append(queue.pop())
    assert "batch" in served[:4]


def test_full_queue_sheds_the_newest_least_urgent_item() -> None:
    """A critical arrival into a full queue evicts the newest batch item; batch cannot evict."""
    queue: ClassQueue[str] = ClassQueue(capacity=3)
    for item in ("b1", "b2", "s1"):
        queue.push(item, BATCH if item.startswith("b") else STANDARD)
    assert queue.push("c1", CRITICAL) == (True, "b2")
    assert queue.push("b3", BATCH) == (False, None)
    assert queue.push("s2", STANDARD) == (True, "b1")
    assert queue.push("s3", STANDARD) == (False, None)
    assert queue.shed == 2
    assert queue.depth_by_class() == {"critical": 1, "standard": 2, "batch": 0}
    assert len(queue) == 3
    assert [queue.pop() for _ in range(3)] == ["c1", "s1", "s2"]
    assert len(queue) == 0 and not queue


def test_zero_capacity_accepts_nothing() -> None:
    """--queue-size 0: nothing is queued (only hand-off to idle workers)."""
    queue: ClassQueue[str] = ClassQueue(capacity=0)
    assert queue.push("c", CRITICAL) == (False, None)
    with pytest.raises(IndexError):
        queue.pop()


def q(patient_id: str, priority: str) -> Query:
    return Query(patient_id, asyncio.get_running_loop().time() + 5, patient_id, priority)


async def test_worker_pool_serves_queued_requests_by_priority() -> None:
    """With its only worker busy, queued requests reach the backend critical first."""
    backend = GatedBackend()
    pattern = WorkerPoolPattern(backend, PatternConfig(workers=1, queue_size=5))
    await pattern.start()
    busy = asyncio.create_task(pattern.submit(q("first", "standard")))
    await backend.wait_active(1)
    queued = [
        asyncio.create_task(pattern.submit(q(pid, priority)))
        for pid, priority in [("b", "batch"), ("s", "standard"), ("c", "critical")]
    ]
    await asyncio.sleep(0)
    backend.release()
    await asyncio.gather(busy, *queued)
    await pattern.shutdown(1.0)
    assert backend.calls == ["first", "c", "s", "b"]


async def test_overload_sheds_batch_before_refusing_critical() -> None:
    """A full queue of batch work makes room for critical requests by shedding batch ones."""
    backend = GatedBackend()
    pattern = WorkerPoolPattern(backend, PatternConfig(workers=1, queue_size=2))
    await pattern.start()
    busy = asyncio.create_task(pattern.submit(q("first", "standard")))
    await backend.wait_active(1)
    batch = [asyncio.create_task(pattern.submit(q(f"b{i}", "batch"))) for i in range(2)]
    await asyncio.sleep(0)
    critical = asyncio.create_task(pattern.submit(q("c", "critical")))
    await asyncio.sleep(0)
    with pytest.raises(Rejected, match="shed"):
        await batch[1]
    backend.release()
    assert id_of(await critical) == "c"
    assert id_of(await batch[0]) == "b0"
    await busy
    await pattern.shutdown(1.0)
    assert pattern.stats()["shed_for_priority"] == 1
