"""Clocks: the event loop's monotonic time in production, a hand-driven one in tests."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    """A monotonic clock in seconds, comparable with request deadlines."""

    def now(self) -> float: ...


class MonotonicClock:
    """The running event loop's clock (what `asyncio.timeout_at` compares deadlines to)."""

    def now(self) -> float:
        try:
            return asyncio.get_running_loop().time()
        except RuntimeError:
            return time.monotonic()


class ManualClock:
    """A clock that only moves when a test calls `advance`."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds
