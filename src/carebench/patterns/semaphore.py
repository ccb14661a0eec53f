"""semaphore: at most `--limit` requests in flight and no queue; beyond it, reject at once.

With `--max-wait` > 0 a request may wait that long (never past its deadline) for a permit,
in arrival order. A released permit passes straight to the oldest waiter, so the number of
requests in flight never exceeds the limit, even for an instant.
"""

from __future__ import annotations

import asyncio
from collections import deque

from carebench.backends.base import Backend
from carebench.errors import Rejected
from carebench.loop_clock import LoopClock
from carebench.models import Answer, Query
from carebench.patterns.base import PatternConfig, check_admissible, query_backend
from carebench.patterns.inflight import InFlight
from carebench.patterns.stats import PatternStats
from carebench.responses import PlainResponseEncoder, ResponseEncoder


class SemaphorePattern:
    """A counting semaphore in front of the backend."""

    name = "semaphore"
    bounded = True

    def __init__(
        self, backend: Backend, config: PatternConfig, loop_clock: LoopClock | None = None
    ) -> None:
        self._backend = backend
        self.limit = config.limit
        self.max_wait = config.max_wait
        self.encoder: ResponseEncoder = PlainResponseEncoder()
        self._in_flight = InFlight()
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closing = False
        self.rejected = 0
        self.waited = 0

    @property
    def capacity(self) -> int:
        return self.limit

    @property
    def backend_concurrency(self) -> int:
        return self.limit

    async def start(self) -> None:
        """Nothing to start."""

    async def submit(self, query: Query) -> Answer:
        check_admissible(query, self._closing)
        await self._acquire(query)
        try:
            return await query_backend(self._backend, query)
        finally:
            self._release()

    async def _acquire(self, query: Query) -> None:
        if self._in_flight.count < self.limit and not self._waiters:
            self._in_flight.enter()
            return
        if self.max_wait <= 0:
            self.rejected += 1
            raise Rejected(f"concurrency limit ({self.limit}) reached")
        await self._wait_for_permit(query)

    async def _wait_for_permit(self, query: Query) -> None:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        self.waited += 1
        try:
            async with asyncio.timeout_at(min(loop.time() + self.max_wait, query.deadline)):
                await waiter
        except TimeoutError:
            # A permit handed over just as the timeout fired is ours: keep it.
            if waiter.done() and not waiter.cancelled():
                return
            self.rejected += 1
            raise Rejected(f"no permit within {self.max_wait:g}s (limit {self.limit})") from None
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def _release(self) -> None:
        """Hand the permit to the oldest live waiter, or give it back."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._in_flight.exit()

    def stats(self) -> PatternStats:
        return {
            "name": self.name,
            "in_flight": self._in_flight.count,
            "peak_in_flight": self._in_flight.peak,
            "limit": self.limit,
            "queued": len(self._waiters),
            "queue_capacity": None,
            "workers": None,
            "workers_busy": None,
            "rejected_at_limit": self.rejected,
            "waited_for_permit": self.waited,
            "object_pool": None,
        }

    async def shutdown(self, drain_timeout: float) -> None:
        self._closing = True
        await self._in_flight.wait_idle(drain_timeout)
