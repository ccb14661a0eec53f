"""The event loop's clock, injectable: `loop.time()` in production, hand-driven in tests.

Request deadlines are on this scale (`Query.deadline` is `loop.time()` + the budget, and
`asyncio.timeout_at` compares against it). What takes a LoopClock reads "now" through it so
tests can move time by hand: the token bucket's refill, adaptive's round-trip times, the
circuit breaker's cool-down and the retry budget. Deadline checks inside the patterns read
the running loop directly, so a ManualLoopClock does not move them.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class LoopClock(Protocol):
    """Seconds on the event loop's monotonic scale, comparable with request deadlines."""

    def now(self) -> float: ...


class RunningLoopClock:
    """The running event loop's `loop.time()` (what `asyncio.timeout_at` compares to)."""

    def now(self) -> float:
        try:
            return asyncio.get_running_loop().time()
        except RuntimeError:
            # Outside a loop (a config check, a test building objects): the same monotonic
            # source asyncio's default loop reads.
            return time.monotonic()


class ManualLoopClock:
    """Stands in for loop time in tests: moves only when the test calls `advance`."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds
