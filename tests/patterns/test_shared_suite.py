"""The contract every registered pattern honours; a new pattern runs through it automatically."""

from __future__ import annotations

import asyncio

import pytest

from carebench.backends.records import synthetic_patient
from carebench.errors import BackendError, ClientGone, DeadlineExceeded, Rejected
from carebench.models import Query
from carebench.patterns.base import Pattern
from tests.fakes import GatedBackend
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
    """Past workers + queue, bounded patterns reject at once with Retry-After; naive admits."""
    capacity = WORKERS + QUEUE_SIZE
    held = [asyncio.create_task(pattern.submit(query(f"P{i}"))) for i in range(capacity)]
    await backend.wait_active(WORKERS)
    extra = asyncio.create_task(pattern.submit(query("P-extra")))
    await asyncio.sleep(0)
    if pattern.bounded:
        with pytest.raises(Rejected) as rejected:
            await extra
        assert rejected.value.retry_after >= 1
        assert len(backend.calls) == WORKERS
    else:
        assert not extra.done()
        assert pattern.stats()["in_flight"] == capacity + 1
        held.append(extra)
    backend.release()
    assert len(await asyncio.gather(*held)) == len(held)


async def test_bounded_patterns_cap_backend_concurrency(
    pattern: Pattern, backend: GatedBackend
) -> None:
    """Bounded patterns never run more than `workers` queries at once."""
    tasks = [asyncio.create_task(pattern.submit(query(f"P{i}"))) for i in range(WORKERS + 3)]
    await backend.wait_active(WORKERS)
    for _ in range(20):
        await asyncio.sleep(0)
    expected = WORKERS if pattern.bounded else WORKERS + 3
    assert backend.peak_active == expected
    backend.release()
    await asyncio.gather(*tasks)


async def test_queued_request_expiring_is_504_and_skipped(
    bounded: Pattern, backend: GatedBackend
) -> None:
    """A request whose deadline passes while it waits is answered 504 and never runs."""
    pattern = bounded
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


async def test_client_gone_is_not_worked_on(bounded: Pattern, backend: GatedBackend) -> None:
    """A queued request whose client left is skipped instead of querying the backend."""
    pattern = bounded
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
    admitted = [asyncio.create_task(pattern.submit(query(f"P{i}"))) for i in range(WORKERS + 2)]
    await backend.wait_active(WORKERS)
    stopping = asyncio.create_task(pattern.shutdown(drain_timeout=5.0))
    await asyncio.sleep(0)
    with pytest.raises(Rejected):
        await pattern.submit(query("P-late"))
    backend.release()
    patients = await asyncio.gather(*admitted)
    await stopping
    assert [p.id for p in patients] == [f"P{i}" for i in range(WORKERS + 2)]


async def test_shutdown_past_drain_timeout_answers_everyone(
    pattern: Pattern, backend: GatedBackend
) -> None:
    """When the drain timeout expires, leftover requests get an error instead of hanging."""
    admitted = [asyncio.create_task(pattern.submit(query(f"P{i}"))) for i in range(WORKERS + 2)]
    await backend.wait_active(WORKERS)
    await pattern.shutdown(drain_timeout=0.05)
    results = await asyncio.gather(*admitted, return_exceptions=True)
    assert len(results) == WORKERS + 2
    for result in results:
        assert isinstance(result, Rejected | asyncio.CancelledError)


async def test_stats_report_queue_and_workers(pattern: Pattern, backend: GatedBackend) -> None:
    """stats() shows requests in flight and, for bounded patterns, queue depth and busy workers."""
    tasks = [asyncio.create_task(pattern.submit(query(f"P{i}"))) for i in range(WORKERS + 1)]
    await backend.wait_active(WORKERS)
    stats = pattern.stats()
    assert stats["name"] == pattern.name
    assert stats["in_flight"] == WORKERS + 1
    if pattern.bounded:
        assert stats["queued"] == 1
        assert stats["workers_busy"] == WORKERS
        assert stats["queue_capacity"] == QUEUE_SIZE
    backend.release()
    await asyncio.gather(*tasks)
