"""naive: one task per request, no bound. The reference's goroutine-per-request.

Nothing stops it from sending every request to the backend at once, which is exactly what
hurts a database with finite capacity. Unlike the reference it answers with the full body:
the HTTP handler awaits the task it spawned.
"""

from __future__ import annotations

import asyncio

from carebench.backends.base import Backend
from carebench.loop_clock import LoopClock
from carebench.models import Answer, Query
from carebench.patterns.base import PatternConfig, backend_call, check_admissible, within_deadline
from carebench.patterns.stats import PatternStats
from carebench.responses import PlainResponseEncoder


class NaivePattern:
    """Spawn a task per request and await it, bounded only by the request's deadline."""

    name = "naive"
    bounded = False

    def __init__(
        self, backend: Backend, config: PatternConfig, loop_clock: LoopClock | None = None
    ) -> None:
        self._backend = backend
        self.encoder = PlainResponseEncoder()
        self._tasks: set[asyncio.Task[Answer]] = set()
        self._closing = False
        self.peak_in_flight = 0

    @property
    def capacity(self) -> None:
        return None

    @property
    def backend_concurrency(self) -> None:
        return None

    async def start(self) -> None:
        """Nothing to start: tasks are created per request."""

    async def submit(self, query: Query) -> Answer:
        check_admissible(query, self._closing)
        task = asyncio.get_running_loop().create_task(backend_call(self._backend, query))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self.peak_in_flight = max(self.peak_in_flight, len(self._tasks))
        try:
            return await within_deadline(task, query.deadline)
        finally:
            del task  # a task keeps its failure: the cycle patterns.base.await_until describes

    def stats(self) -> PatternStats:
        return {
            "name": self.name,
            "in_flight": len(self._tasks),
            "peak_in_flight": self.peak_in_flight,
            "queued": 0,
            "queue_capacity": None,
            "workers": None,
            "workers_busy": None,
            "object_pool": None,
        }

    async def shutdown(self, drain_timeout: float) -> None:
        self._closing = True
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=drain_timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
