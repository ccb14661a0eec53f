"""Deadlines and pauses shared by the load engine's loops: one watchdog enforces every
client's request deadline."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["CONNECTION_ERROR_BACKOFF", "Deadline", "InFlight", "Timer", "Watchdog"]

#: Pause after a connection error so a dead server does not turn the loop into a busy spin.
CONNECTION_ERROR_BACKOFF = 0.01

#: The load generator's time base (perf_counter by default): Schedule slots, `until`, and
#: every send and completion time are read from it, so latency is a difference of two reads.
Timer = Callable[[], float]


class Deadline(Protocol):
    """A client as the watchdog sees it: the deadline of its request in flight (inf when
    none), whether it has expired, and how to end the request that passed it."""

    deadline: float
    expired: bool

    def expire(self) -> None: ...


@dataclass(slots=True)
class InFlight:
    """One client task's request in flight: its deadline (inf when none), and whether the
    watchdog cancelled it for passing that deadline (a cancellation from anywhere else
    propagates)."""

    task: asyncio.Task[Any]
    deadline: float = math.inf
    expired: bool = False

    def expire(self) -> None:
        self.task.cancel()


@dataclass(slots=True)
class Watchdog:
    """Enforces every client's request deadline from one task.

    An `asyncio.timeout` per request costs a timer handle, a context manager and a reschedule
    on every request (~4 us of a ~20 us budget); here a request only writes its deadline, and
    the watchdog sleeps until the earliest one, cancelling the client task whose request is
    still in flight then. A request's deadline is always `timeout` after its send, so the
    earliest deadline is never moved earlier by a new request.
    """

    timeout: float
    timer: Timer
    clients: list[Deadline] = field(default_factory=list)

    def watch(self) -> InFlight:
        """The deadline slot of the calling client task."""
        task = asyncio.current_task()
        assert task is not None
        slot = InFlight(task)
        self.clients.append(slot)
        return slot

    async def run(self) -> None:
        while True:
            now = self.timer()
            earliest = now + self.timeout
            for slot in self.clients:
                deadline = slot.deadline
                if deadline <= now:
                    if not slot.expired:
                        slot.expired = True
                        slot.expire()
                elif deadline < earliest:
                    earliest = deadline
            await asyncio.sleep(earliest - now)
