"""The contract every registered pattern honours; a new pattern runs through it automatically."""

from __future__ import annotations

import asyncio

import pytest

from carebench.backends.records import synthetic_patient
from carebench.errors import BackendError, ClientGone, DeadlineExceeded, Rejected
from carebench.models import Query
from carebench.patterns.base import Pattern
from tests.fakes import GatedBackend, id_of
from tests.patterns.conftest import QUEUE_SIZE, WORKERS, query


async def test_returns_the_deterministic_record(pattern: Pattern, backend: GatedBackend) -> None:
    """submit answers with the backend's record for the requested id."""
    backend.release()
    first = await pattern.submit(query("P00001"))
    again = await pattern.submit(query("P00001"))
    assert first == again == synthetic_patient("P00001")
    assert backend.calls == ["P00001", "P00001"]


async def test_backend_errors_pass_through(pattern: Pattern, backend: GatedBackend) -> None:
    """A backend failure reaches the caller as BackendError (HTTP 500), not as a rejection."""
    backend.fail_ids.add("P666")
    backend.release()
    with pytest.raises(BackendError):
        await pattern.submit(query("P666"))


async def test_expired_request_never_reaches_backend(
    pattern: Pattern, backend: GatedBackend
) -> None:
    """A request whose deadline has passed is refused before the backend sees it."""
    backend.release()
    with pytest.raises(DeadlineExceeded):
        await pattern.submit(query("P1", timeout=-0.001))
    assert backend.calls == []


async def test_deadline_while_in_backend_is_504(pattern: Pattern, backend: GatedBackend) -> None:
    """A backend that outlives the deadline yields DeadlineExceeded, not a hang."""
    with pytest.raises(DeadlineExceeded):
        await pattern.submit(query("P1", timeout=0.05))


async def test_overload_rejects_only_when_bounded(pattern: Pattern, backend: GatedBackend) -> None:
    """Past its capacity a bounded pattern rejects at once with Retry-After; naive admits all."""
    capacity = pattern.capacity if pattern.capacity is not None else WORKERS + QUEUE_SIZE
    running = pattern.backend_concurrency or capacity
    held = [asyncio.create_task(pattern.submit(query(f"P{i}"))) for i in range(capacity)]
    await backend.wait_active(running)
    extra = asyncio.create_task(pattern.submit(query("P-extra")))
    await asyncio.sleep(0)
    if pattern.bounded:
        with pytest.raises(Rejected) as rejected:
            await extra
        assert rejected.value.retry_after >= 0
        assert len(backend.calls) == running
    else:
        assert not extra.done()
        assert pattern.stats()["in_flight"] == capacity + 1
        held.append(extra)
    backend.release()
    assert len(await asyncio.gather(*held)) == len(held)


async def test_backend_concurrency_is_capped(pattern: Pattern, backend: GatedBackend) -> None:
    """Backend queries at once = min(stated backend concurrency, admitted); uncapped = admitted."""
    capacity = pattern.capacity
    offered = (capacity or 5) + 3
    tasks = [asyncio.create_task(pattern.submit(query(f"P{i}"))) for i in range(offered)]
    for _ in range(50):
        await asyncio.sleep(0)
    refused = [task for task in tasks if task.done() and isinstance(task.exception(), Rejected)]
    admitted = offered - len(refused)
    cap = pattern.backend_concurrency
    if cap is None:
        # Nothing holds an admitted request back: every one is in the backend at once.
        assert backend.peak_active == admitted
        assert admitted == (capacity if pattern.bounded else offered)
    else:
        assert offered > cap, "the test must offer more than the cap to show it holds"
        assert backend.peak_active == min(cap, admitted)
    backend.release()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_queued_request_expiring_is_504_and_skipped(
    queueing: Pattern, backend: GatedBackend
) -> None:
    """A request whose deadline passes while it waits is answered 504 and never runs."""
    pattern = queueing
    busy = [asyncio.create_task(pattern.submit(query(f"P{i}"))) for i in range(WORKERS)]
    await backend.wait_active(WORKERS)
    with pytest.raises(DeadlineExceeded):
        await pattern.submit(query("P-late", timeout=0.05))
    backend.release()
    await asyncio.gather(*busy)
    for _ in range(5):
        await asyncio.sleep(0)
    assert "P-late" not in backend.calls
    assert pattern.stats()["expired_in_queue"] == 1


async def test_client_gone_is_not_worked_on(queueing: Pattern, backend: GatedBackend) -> None:
    """A queued request whose client left is skipped instead of querying the backend."""
    pattern = queueing
    busy = [asyncio.create_task(pattern.submit(query(f"P{i}"))) for i in range(WORKERS)]
    await backend.wait_active(WORKERS)
    abandoned: Query = query("P-gone")
    waiting = asyncio.create_task(pattern.submit(abandoned))
    await asyncio.sleep(0)
    abandoned.client_gone = True
    backend.release()
    with pytest.raises(ClientGone):
        await waiting
    await asyncio.gather(*busy)
    assert "P-gone" not in backend.calls


async def test_shutdown_drains_accepted_work(pattern: Pattern, backend: GatedBackend) -> None:
    """Shutdown lets every admitted request finish, then refuses new ones."""
    admitted_count = min(pattern.capacity or 4, 4)
    admitted = [asyncio.create_task(pattern.submit(query(f"P{i}"))) for i in range(admitted_count)]
    await backend.wait_active(min(admitted_count, pattern.backend_concurrency or admitted_count))
    stopping = asyncio.create_task(pattern.shutdown(drain_timeout=5.0))
    await asyncio.sleep(0)
    with pytest.raises(Rejected):
        await pattern.submit(query("P-late"))
    backend.release()
    patients = await asyncio.gather(*admitted)
    await stopping
    assert [id_of(p) for p in patients] == [f"P{i}" for i in range(admitted_count)]


async def test_shutdown_past_drain_timeout_does_not_hang(
    pattern: Pattern, backend: GatedBackend
) -> None:
    """When the drain timeout expires, shutdown returns; queued requests get an error."""
    admitted_count = min(pattern.capacity or 4, 4)
    running = min(admitted_count, pattern.backend_concurrency or admitted_count)
    admitted = [asyncio.create_task(pattern.submit(query(f"P{i}"))) for i in range(admitted_count)]
    await backend.wait_active(running)
    # The gated backend cannot answer before release: only the drain timeout can end shutdown.
    await asyncio.wait_for(pattern.shutdown(drain_timeout=0.05), timeout=5.0)
    backend.release()
    results = await asyncio.gather(*admitted, return_exceptions=True)
    in_backend, queued = results[:running], results[running:]
    # Requests still queued never reach the backend: each is answered with Rejected.
    assert all(isinstance(result, Rejected) for result in queued), queued
    assert sorted(backend.calls) == [f"P{i}" for i in range(running)]
    # Those already in the backend either finish with their own record or are cut off.
    for index, result in enumerate(in_backend):
        if isinstance(result, BaseException):
            assert isinstance(result, Rejected | asyncio.CancelledError), result
        else:
            assert id_of(result) == f"P{index}"


async def test_stats_report_in_flight(pattern: Pattern, backend: GatedBackend) -> None:
    """stats() names the pattern and counts requests in flight (queued ones included)."""
    count = min(pattern.capacity or 3, 3)
    tasks = [asyncio.create_task(pattern.submit(query(f"P{i}"))) for i in range(count)]
    await backend.wait_active(min(count, pattern.backend_concurrency or count))
    stats = pattern.stats()
    assert stats["name"] == pattern.name
    assert stats["in_flight"] == count
    backend.release()
    await asyncio.gather(*tasks)
