"""The load engine: closed loop (clients back to back) and open loop (a fixed arrival rate).

Open loop follows wrk2: each connection takes the next slot of one global schedule, waits for
its intended time, and latency is measured from that *intended* time, so a stalled server is
charged for the requests it prevented from being sent (coordinated omission). Latency from
the actual send is recorded too.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from carebench.loadgen import callback_loop as _python_callback_loop
from carebench.loadgen.channels import Channel, HttpChannel
from carebench.loadgen.compiled import compiled_or_python
from carebench.loadgen.ids import IdChooser
from carebench.loadgen.priorities import PriorityChooser, no_priority
from carebench.loadgen.results import RunRecorder, classify
from carebench.loadgen.stages import LoadShape
from carebench.loadgen.timing import (
    CONNECTION_ERROR_BACKOFF,
    Deadline,
    InFlight,
    Timer,
    Watchdog,
)

__all__ = [
    "CONNECTION_ERROR_BACKOFF",
    "MIN_BACKOFF",
    "CallbackLoop",
    "Deadline",
    "Engine",
    "InFlight",
    "Schedule",
    "Stepped",
    "Timer",
    "Watchdog",
]

#: The closed loop over HTTP channels: Cython's build of carebench.loadgen.callback_loop when
#: there is a fresh one, the module itself otherwise (see carebench.loadgen.compiled).
CallbackLoop: type[_python_callback_loop.CallbackLoop] = compiled_or_python(
    _python_callback_loop
).CallbackLoop

#: Shortest pause of a client honouring Retry-After (when the server sent none or 0).
MIN_BACKOFF = 0.1
#: Longest a client left out of the current stage waits before looking again.
IDLE_RECHECK = 0.1


@dataclass(slots=True)
class Schedule:
    """Intended send times for an open loop: constant spacing or Poisson arrivals.

    `rate` holds from `start` to `end`, or, with a load shape, each stage's rate holds for
    its stage (`rate` is then the shape's mean rate, which the report compares with).
    """

    start: float
    rate: float
    end: float
    poisson: bool = False
    rng: random.Random | None = None
    shape: LoadShape | None = None
    _next: float = 0.0
    issued: int = 0
    #: The stage being scheduled: its index, when it began, and its slots so far.
    _stage: int = 0
    _stage_start: float = 0.0
    _stage_issued: int = 0

    def __post_init__(self) -> None:
        self._next = self._stage_start = self.start
        self.rng = self.rng or random.Random()

    def _stage_rate(self) -> float:
        return self.rate if self.shape is None else self.shape.stages[self._stage].level

    def take(self) -> float | None:
        """The next slot's intended time, or None once the schedule has ended."""
        slot = self._next
        if slot >= self.end:
            return None
        self.issued += 1
        self._stage_issued += 1
        rate = self._stage_rate()
        if self.poisson:
            assert self.rng is not None
            following = slot + self.rng.expovariate(rate)
        else:
            # From the stage's start each time: summing 1/rate drifts by one slot over a run.
            following = self._stage_start + self._stage_issued / rate
        self._next = self._into_next_stage(following)
        return slot

    def _into_next_stage(self, following: float) -> float:
        """`following`, or the first slot of the next stage when it falls past this one."""
        shape = self.shape
        if shape is None or self._stage + 1 >= len(shape.stages):
            return following
        boundary = self.start + shape.ends[self._stage]
        if following < boundary:
            return following
        self._stage += 1
        self._stage_start, self._stage_issued = boundary, 0
        if self.poisson:  # memoryless: the next arrival is drawn afresh at the new rate
            assert self.rng is not None
            return boundary + self.rng.expovariate(self._stage_rate())
        return boundary


@dataclass(frozen=True, slots=True)
class Stepped:
    """A closed-loop load shape placed in time: how many clients send when."""

    shape: LoadShape
    #: The timer's reading at the shape's offset 0.
    start: float

    def idle_for(self, index: int, now: float) -> float:
        """0 when client `index` is among those sending now; otherwise how long it should
        wait before looking again (until the next stage, and at most IDLE_RECHECK, so a
        stopped run is noticed)."""
        offset = now - self.start
        if index < self.shape.level_at(offset):
            return 0.0
        return max(min(self.shape.next_change(offset) - offset, IDLE_RECHECK), 1e-3)


class Engine:
    """Sends requests through channels and records every outcome in a RunRecorder."""

    def __init__(
        self,
        channels: Sequence[Channel],
        choose_id: IdChooser,
        timeout: float,
        recorder: RunRecorder,
        timer: Timer = time.perf_counter,
        choose_priority: PriorityChooser = no_priority,
        honor_retry_after: bool = False,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.channels = channels
        self.choose_id = choose_id
        self.choose_priority = choose_priority
        self.honor_retry_after = honor_retry_after
        self._sleep = sleep
        self.timeout = timeout
        self.recorder = recorder
        self.timer = timer
        self.stopping = False
        self.sent = 0
        self.last_send = 0.0

    def start_measuring(self, recorder: RunRecorder) -> None:
        """Record into `recorder` from now on; what was sent before (warm-up) is forgotten."""
        self.recorder = recorder
        self.sent = 0
        self.last_send = 0.0

    async def closed_loop(
        self, requests: float, until: float = math.inf, shape: Stepped | None = None
    ) -> None:
        """`len(channels)` clients send back to back until `requests` are sent or `until`.

        With a `shape`, client k sends only while the stage in force has more than k
        clients, and waits otherwise.
        """
        if not self.honor_retry_after and all(
            isinstance(channel, HttpChannel) for channel in self.channels
        ):
            await CallbackLoop(self, requests, until, shape).run()
            return
        remaining = requests
        watchdog = Watchdog(self.timeout, self.timer)

        async def client(index: int, channel: Channel) -> None:
            nonlocal remaining
            slot = watchdog.watch()
            # The time checked against `until` is the send time, so nothing counts as sent after it.
            while remaining > 0 and not self.stopping and (now := self.timer()) < until:
                if shape is not None and (idle := shape.idle_for(index, now)) > 0:
                    await asyncio.sleep(idle)
                    continue
                remaining -= 1
                if (
                    await self._one(channel, None, slot, now) == "rejected"
                    and self.honor_retry_after
                ):
                    # A well-behaved client waits as told instead of re-sending at once.
                    await self._sleep(max(channel.retry_after, MIN_BACKOFF))

        clients = [client(index, channel) for index, channel in enumerate(self.channels)]
        await _run_clients(watchdog, clients)

    async def open_loop(self, schedule: Schedule) -> None:
        """Each channel takes the next slot, waits for its time, sends, and repeats."""
        watchdog = Watchdog(self.timeout, self.timer)

        async def client(channel: Channel) -> None:
            slot = watchdog.watch()
            while not self.stopping:
                intended = schedule.take()
                if intended is None:
                    return
                delay = intended - self.timer()
                if delay > 0:
                    await asyncio.sleep(delay)
                await self._one(channel, intended, slot)

        await _run_clients(watchdog, [client(channel) for channel in self.channels])

    async def _one(
        self, channel: Channel, intended: float | None, slot: InFlight, now: float | None = None
    ) -> str:
        sent = self.last_send = self.timer() if now is None else now
        self.sent += 1
        status = 0
        priority = self.choose_priority()
        slot.deadline = sent + self.timeout
        try:
            status = await channel.fetch(self.choose_id(), priority)
            outcome = classify(status)
        except asyncio.CancelledError:
            if not slot.expired:
                raise
            channel.reset()
            outcome = "timeout"
        except OSError:
            channel.reset()
            outcome = "connection_error"
        finally:
            slot.deadline = math.inf
            if slot.expired:  # also when the channel swallowed the cancellation
                slot.expired = False
                slot.task.uncancel()
        done = self.timer()
        if intended is None:
            self.recorder.record(outcome, done - sent, done, status, priority=priority)
        else:
            self.recorder.record(
                outcome, done - intended, done, status, done - sent, priority=priority
            )
            self.recorder.note_lag(sent - intended)
        if outcome == "connection_error":
            await asyncio.sleep(CONNECTION_ERROR_BACKOFF)
        return outcome


async def _run_clients(watchdog: Watchdog, clients: list[Coroutine[Any, Any, None]]) -> None:
    """Run the client coroutines to the end, with the watchdog enforcing their deadlines."""
    enforcing = asyncio.get_running_loop().create_task(watchdog.run())
    try:
        await asyncio.gather(*clients)
    finally:
        enforcing.cancel()
