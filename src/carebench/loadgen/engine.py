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
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from carebench.loadgen.channels import Channel, HttpChannel
from carebench.loadgen.client import ConnectionClosed, Response, ResponseCallback
from carebench.loadgen.ids import IdChooser
from carebench.loadgen.priorities import PriorityChooser, no_priority
from carebench.loadgen.results import Outcome, RunRecorder, classify
from carebench.loadgen.stages import LoadShape

_INF = math.inf
#: Pause after a connection error so a dead server does not turn the loop into a busy spin.
CONNECTION_ERROR_BACKOFF = 0.01
#: Shortest pause of a client honouring Retry-After (when the server sent none or 0).
MIN_BACKOFF = 0.1
#: Longest a client left out of the current stage waits before looking again.
IDLE_RECHECK = 0.1

#: The load generator's time base (perf_counter by default): Schedule slots, `until`, and
#: every send and completion time are read from it, so latency is a difference of two reads.
Timer = Callable[[], float]


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


class CallbackLoop:
    """The closed loop over HTTP channels without a task per client.

    Each client's next request is sent from the callback that settles the previous one, in
    the event loop's read callback: no future, no task wake-up and no coroutine per request
    (~1 us of ~10 us). Outcomes, deadlines (the same watchdog), the request budget, `until`
    and `stopping` are as in `Engine.closed_loop`'s task per client; a connection is (re)opened
    by a short task. Refused clients re-send at once: --honor-retry-after runs the task loop.
    """

    def __init__(
        self, engine: Engine, requests: float, until: float, shape: Stepped | None = None
    ) -> None:
        self.engine = engine
        #: The request budget as a value of `engine.sent` (which counts every send).
        self.budget_end = engine.sent + requests
        self.until = until
        self.shape = shape
        self.watchdog = Watchdog(engine.timeout, engine.timer)
        self.running = 0
        self.halted = False
        self.event_loop = asyncio.get_running_loop()
        self.finished: asyncio.Future[None] = self.event_loop.create_future()
        #: Clients whose next request waits for the end of this round of read callbacks.
        self.ready: list[CallbackClient] = []
        #: None when requests carry no priority class: no call per request to learn that.
        self.choose_priority = (
            None if engine.choose_priority is no_priority else engine.choose_priority
        )
        #: The recorder's buffer that settle appends to (re-read each round, see send_ready).
        self.pending = engine.recorder.pending

    async def run(self) -> None:
        channels = [c for c in self.engine.channels if isinstance(c, HttpChannel)]
        clients = [CallbackClient(self, channel, index) for index, channel in enumerate(channels)]
        self.watchdog.clients.extend(clients)
        self.running = len(clients)
        enforcing = asyncio.get_running_loop().create_task(self.watchdog.run())
        try:
            self.send_each(clients)
            await self.finished
        finally:
            self.halted = True
            enforcing.cancel()
            for client in clients:
                client.stop()
            # Kept per client rather than written to the engine on every send.
            self.engine.last_send = max([self.engine.last_send, *(c.sent for c in clients)])

    def send_soon(self, client: CallbackClient) -> None:
        """Send `client`'s next request once this round of read callbacks is over.

        Sending from the read callback itself wakes the target once per response; writing
        the round's requests together lets it find several at each wake-up, as the task per
        client does (measured: sending at once cost the target ~15 % more CPU per request
        and this client ~1 us more of system time).
        """
        if not self.ready:
            self.event_loop.call_soon(self.send_ready)
        self.ready.append(client)

    def send_ready(self) -> None:
        ready, self.ready = self.ready, []
        recorder = self.engine.recorder
        recorder.flush_if_full()
        self.pending = recorder.pending
        self.send_each(ready)

    def send_each(self, clients: Iterable[CallbackClient]) -> None:
        """Send each client's next request, or tell it it is done (budget spent, `until`
        passed, stopping), or hold it while the load shape leaves it out.

        One loop over a round's clients, with what is the same for all of them read once,
        rather than a call per client: ~0.1 us a request (measured in process).
        """
        engine = self.engine
        if self.halted or engine.stopping:
            for _ in clients:
                self.client_done()
            return
        timer, timeout, choose_id = engine.timer, engine.timeout, engine.choose_id
        budget_end, until, shape = self.budget_end, self.until, self.shape
        choose_priority = self.choose_priority
        sent = engine.sent
        try:
            for client in clients:
                now = timer()
                if sent >= budget_end or now >= until:
                    self.client_done()
                    continue
                if shape is not None and (idle := shape.idle_for(client.index, now)) > 0:
                    self.event_loop.call_later(idle, client.send_next)
                    continue
                sent += 1
                client.sent = now
                priority = client.priority = None if choose_priority is None else choose_priority()
                client.deadline = now + timeout
                patient_id = choose_id()
                send = client.send
                if send is not None and priority is None:
                    request = client.requests.get(patient_id)
                    if request is not None:
                        try:
                            send(request, client.settle_bound)
                        except ConnectionClosed:
                            client.send = None
                        else:
                            continue
                client.send_through_channel(patient_id, priority)
        finally:
            engine.sent = sent

    def client_done(self) -> None:
        self.running -= 1
        if self.running == 0 and not self.finished.done():
            self.finished.set_result(None)


class CallbackClient:
    """One closed-loop client of a CallbackLoop: send, settle, record, send again."""

    __slots__ = (
        "channel",
        "connecting",
        "deadline",
        "expired",
        "index",
        "loop",
        "priority",
        "requests",
        "send",
        "sent",
        "settle_bound",
    )

    def __init__(self, loop: CallbackLoop, channel: HttpChannel, index: int = 0) -> None:
        self.loop = loop
        self.channel = channel
        self.index = index
        self.deadline = math.inf
        self.expired = False
        self.sent = 0.0
        self.priority: str | None = None
        self.connecting: asyncio.Task[None] | None = None
        #: `settle`, bound once: a bound method made per request costs ~30 ns.
        self.settle_bound = self.settle
        #: The channel's encoded requests, and its open connection's send for them (None
        #: until the channel has sent once on that connection): see HttpChannel.send_encoded.
        self.requests = channel.requests
        self.send: Callable[[bytes, ResponseCallback], None] | None = None

    def send_next(self) -> None:
        """Send this client's next request (see CallbackLoop.send_each)."""
        self.loop.send_each((self,))

    def send_through_channel(self, patient_id: str, priority: str | None) -> None:
        """Send with the channel, which encodes the request; open a connection if needed."""
        channel = self.channel
        if channel.send_then(patient_id, priority, self.settle_bound):
            self.send = channel.send_encoded
            return
        self.send = None
        self.connecting = asyncio.get_running_loop().create_task(
            self._connect_and_send(patient_id, priority)
        )

    async def _connect_and_send(self, patient_id: str, priority: str | None) -> None:
        try:
            await self.channel.connect()
        except OSError as error:
            self.connecting = None
            self.settle(None, error)
            return
        except asyncio.CancelledError:
            self.connecting = None
            if self.expired:
                self.settle(None, None)
            return
        self.connecting = None
        if not self.channel.send_then(patient_id, priority, self.settle):
            self.settle(None, ConnectionError("connection closed as soon as it opened"))

    def expire(self) -> None:
        """The watchdog's deadline passed: end the request (settle follows, as a timeout)."""
        if self.connecting is not None:
            self.connecting.cancel()
        else:
            self.channel.reset()

    def settle(self, response: Response | None, error: OSError | None) -> None:
        loop = self.loop
        if loop.halted:
            return
        engine = loop.engine
        self.deadline = _INF
        done = engine.timer()
        if self.expired or response is None:
            self._settle_unanswered(done)
            return
        status = response.status
        if self.priority is None:
            # RunRecorder.record, inline (send_ready checks the buffer's size).
            pending = loop.pending
            pending.keys.append(status)  # its outcome follows from it: see Pending
            pending.latencies.append(done - self.sent)
            pending.times.append(done)
        else:
            engine.recorder.record(
                classify(status), done - self.sent, done, status, priority=self.priority
            )
        ready = loop.ready  # loop.send_soon(self), one call less per request
        if not ready:
            loop.event_loop.call_soon(loop.send_ready)
        ready.append(self)

    def _settle_unanswered(self, done: float) -> None:
        """The request timed out (the watchdog expired it) or its connection failed."""
        loop = self.loop
        self.channel.reset()
        outcome: Outcome
        if self.expired:
            self.expired = False
            outcome = "timeout"
        else:
            outcome = "connection_error"
        loop.engine.recorder.record(outcome, done - self.sent, done, 0, priority=self.priority)
        if outcome == "connection_error":
            loop.event_loop.call_later(CONNECTION_ERROR_BACKOFF, self.send_next)
        else:
            loop.send_soon(self)

    def stop(self) -> None:
        if self.connecting is not None:
            self.connecting.cancel()
