"""A refused or failed request is freed by reference counting once its handler has answered.

A failure delivered through a future is kept by it, and its traceback keeps every frame it
passed; a frame still holding the future closes a cycle that only the cyclic collector frees,
and a server runs that collector rarely (server/gc_tuning.py). codel's queue sheds did so at
~1,000 a second under overload: ~10 MiB of requests waited for the collector. These tests
turn the collector off and check with weak references that no failure outlives its handler.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

from carebench.errors import BackendError, ClientGone, DeadlineExceeded, Rejected
from carebench.models import Query
from carebench.patterns.base import Pattern
from tests.fakes import GatedBackend
from tests.patterns.conftest import query
from tests.patterns.test_codel import running, settle

Failure = Rejected | DeadlineExceeded | BackendError | ClientGone


@contextmanager
def collector_off() -> Iterator[None]:
    """Only reference counting frees objects meanwhile."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def answer(pattern: Pattern, request: Query) -> weakref.ref[Failure] | None:
    """What the server's handler does with the pattern's answer: a weak reference to the
    failure it caught (None on success), so the test sees whether anything else keeps it."""
    try:
        await pattern.submit(request)
    except (Rejected, DeadlineExceeded, BackendError, ClientGone) as failure:
        return weakref.ref(failure)
    return None


async def test_failures_are_freed_without_the_cyclic_collector(
    pattern: Pattern, backend: GatedBackend
) -> None:
    """Refusals at the door, deadlines passing in a queue and backend errors (run by a worker
    or in the handler's own task): each failure is gone as soon as its handler is done."""
    backend.fail_ids.add("F0")
    with collector_off():
        first = [asyncio.create_task(answer(pattern, query(name))) for name in ("P0", "P1", "F0")]
        await settle()
        expiring = [asyncio.create_task(answer(pattern, query(f"E{i}", 0.02))) for i in range(2)]
        await asyncio.wait(expiring, timeout=2)
        extra = [asyncio.create_task(answer(pattern, query(f"X{i}"))) for i in range(4)]
        await settle()
        backend.release()
        refs = await asyncio.wait_for(asyncio.gather(*first, *expiring, *extra), timeout=2)
        failures = [ref for ref in refs if ref is not None]
        assert failures, "the scenario must make the pattern refuse or fail something"
        assert [ref() for ref in failures] == [None] * len(failures)


async def test_shed_requests_are_freed_without_the_cyclic_collector() -> None:
    """Requests codel sheds from a standing queue are gone once their handlers answered 503."""
    with collector_off():
        async with running() as rig:
            busy = await rig.occupy_worker()
            shed = [asyncio.create_task(answer(rig.pattern, query(f"P{i}"))) for i in range(4)]
            await settle()
            rig.clock.advance(0.2)  # standing past the interval: congested, 5 ms timeout
            arrival = await rig.queue("P-new")  # its arrival sheds the four
            refs = await asyncio.wait_for(asyncio.gather(*shed), timeout=2)
            assert rig.pattern.stats()["shed_queue_timeout"] == 4
            rig.backend.release()
            await asyncio.gather(busy, *arrival)
        assert all(ref is not None for ref in refs)
        assert [ref() for ref in refs if ref is not None] == [None] * 4
