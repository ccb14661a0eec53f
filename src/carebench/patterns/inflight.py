"""Counting requests in flight, with a peak and a way to wait for zero (graceful drain)."""

from __future__ import annotations

import asyncio
import contextlib


class InFlight:
    """A counter of admitted requests that shutdown can wait on."""

    def __init__(self) -> None:
        self.count = 0
        self.peak = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def enter(self) -> int:
        """Count one more request; returns how many were in flight before it."""
        before = self.count
        self.count += 1
        self.peak = max(self.peak, self.count)
        self._idle.clear()
        return before

    def exit(self) -> None:
        self.count -= 1
        if self.count == 0:
            self._idle.set()

    async def wait_idle(self, within: float) -> bool:
        """Wait until nothing is in flight, at most `within` seconds; whether it got there."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                await self._idle.wait()
        return self.count == 0
