"""within_deadline: a deadline becomes DeadlineExceeded, an outside cancellation stays one."""

from __future__ import annotations

import asyncio

import pytest

from carebench.errors import DeadlineExceeded
from carebench.patterns.base import within_deadline


async def test_work_past_its_deadline_is_cancelled_and_reported() -> None:
    """The awaited work is cancelled at the deadline and the caller gets DeadlineExceeded."""
    loop = asyncio.get_running_loop()
    cancelled = asyncio.Event()

    async def slow() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(DeadlineExceeded):
        await within_deadline(slow(), loop.time() + 0.01, loop)
    assert cancelled.is_set()
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0


async def test_work_within_its_deadline_returns_its_result() -> None:
    """Work that finishes first returns its value and leaves no timer behind to fire later."""
    loop = asyncio.get_running_loop()

    async def quick() -> int:
        await asyncio.sleep(0)
        return 7

    assert await within_deadline(quick(), loop.time() + 0.01) == 7
    await asyncio.sleep(0.02)  # a leftover timer would cancel this task here


async def test_an_outside_cancellation_is_not_turned_into_a_deadline() -> None:
    """Cancelling the awaiting task before its deadline propagates CancelledError."""
    loop = asyncio.get_running_loop()
    started = asyncio.Event()

    async def waiter() -> None:
        async def forever() -> None:
            started.set()
            await asyncio.sleep(10)

        await within_deadline(forever(), loop.time() + 5.0)

    task = asyncio.create_task(waiter())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
