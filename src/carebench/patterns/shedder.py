"""shedder: priority-aware load shedding driven by a PI controller (Uber's Cinnamon, 2023).

Each request has a priority: its class (X-Request-Priority: critical, standard, batch) and a
cohort within the class (one of 128, dealt round-robin in a bit-reversed order so consecutive
requests land far apart). Every 100 ms (on the injectable clock, at the first request after
the interval) a PI controller compares the p90 queueing delay of the last interval (or the age
of the oldest queued request, if larger) with `--shed-target-delay` and sets how much of the
traffic to refuse. The controller works on the logarithm of the admitted fraction, so it is as
responsive refusing 99 % (clients that re-send at once) as refusing 10 %; its integral is
clamped (no windup). That fraction becomes a rejection threshold over the priority levels,
using the recent mix of classes: batch cohorts first, then standard, then critical, whose top
cohort is never refused by the threshold. A request below the threshold is refused at once
(503, Retry-After); the others wait in a priority queue (`--queue-size`) for one of the
in-flight slots, whose number a LatencyTuner learns from service times (Cinnamon's
auto-tuner), starting at `--limit` and kept within [`--shed-min-limit`, `--shed-max-limit`].

A queued request whose deadline passes is answered 504 and never runs; one whose client left
is skipped; a full queue sheds its newest less urgent request, else refuses the newcomer.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from dataclasses import dataclass

from carebench.backends.base import Backend
from carebench.errors import BackendError, ClientGone, DeadlineExceeded, Rejected
from carebench.limits.latency_tuner import LatencyTuner, percentile
from carebench.limits.pid import PidController, clamp
from carebench.loop_clock import LoopClock, RunningLoopClock
from carebench.models import PRIORITIES, PRIORITY_RANK, Answer, Query
from carebench.patterns.base import PatternConfig, await_until, check_admissible, query_backend
from carebench.patterns.inflight import InFlight
from carebench.patterns.priority import ClassQueue
from carebench.patterns.stats import PatternStats
from carebench.responses import PlainResponseEncoder, ResponseEncoder

#: Seconds between controller updates.
CONTROL_INTERVAL = 0.1
#: Cohorts per priority class (Cinnamon's number); a power of two for the bit reversal.
COHORT_BITS = 7
COHORTS = 1 << COHORT_BITS
#: Controller gains on the error (delay - target) / target, clamped to [-1, MAX_ERROR]; the
#: output is -ln(admitted fraction), so KI = 3 moves the admitted fraction by up to e^0.3
#: (x1.35) per interval at an error of 1.
KP, KI = 0.2, 3.0
MAX_ERROR = 3.0
#: Admit at least 1/1000 of the traffic: the controller needs requests to see the delay fall.
MAX_PRESSURE = math.log(1000.0)
#: The queue holds at most this many target delays' worth of work (by Little's law, from the
#: mean service time and the limit), so a burst admitted before the controller reacts cannot
#: make anyone wait much longer than the target; `--queue-size` stays the hard bound.
QUEUE_BOUND = 2.0
#: Weight of the newest interval in the class mix the threshold is read from.
MIX_SMOOTHING = 0.2
#: Queue waits kept per interval for its p90 (the rest of a busy interval is not needed).
MAX_WAIT_SAMPLES = 4096


def _bit_reversed(value: int, bits: int) -> int:
    return int(format(value, f"0{bits}b")[::-1], 2)


#: Arrival number (mod COHORTS) -> cohort: spreads the refused cohorts evenly over time.
COHORT_ORDER = tuple(_bit_reversed(i, COHORT_BITS) for i in range(COHORTS))


def cohorts_to_shed(fraction: float, shares: list[float]) -> list[int]:
    """Per class (by rank) how many of its cohorts to refuse so that `fraction` of the traffic,
    mixed as `shares`, is refused: less urgent classes wholly before any of a more urgent one.
    The most urgent class always keeps one cohort."""
    shed = [0] * len(shares)
    remaining = fraction
    for rank in reversed(range(len(shares))):
        if remaining <= 0:
            break
        share = shares[rank]
        if share <= remaining:
            shed[rank], remaining = COHORTS, remaining - share
        else:
            shed[rank], remaining = math.ceil(remaining / share * COHORTS), 0.0
    shed[0] = min(shed[0], COHORTS - 1)
    return shed


@dataclass(slots=True)
class Waiter:
    """A queued request: its query, the future its handler awaits and when it was queued."""

    query: Query
    future: asyncio.Future[None]
    queued_at: float


class ShedderPattern:
    """Refuse by priority below a PI-controlled threshold; run the rest under a tuned limit."""

    name = "shedder"
    bounded = True
    #: Holds admitted requests in a queue until an in-flight slot is free.
    queues = True

    def __init__(
        self, backend: Backend, config: PatternConfig, loop_clock: LoopClock | None = None
    ) -> None:
        self._backend = backend
        self._clock = loop_clock or RunningLoopClock()
        self.config = config
        self.target_delay = config.shed_target_delay
        self.encoder: ResponseEncoder = PlainResponseEncoder()
        self.controller = PidController(KP, KI, high=MAX_PRESSURE)
        self.tuner = LatencyTuner(
            initial=config.limit, min_limit=config.shed_min_limit, max_limit=config.shed_max_limit
        )
        self._queue: ClassQueue[Waiter] = ClassQueue(min(config.queue_size, self.tuner.limit))
        #: The same waiters in arrival order, for the age of the oldest.
        self._arrival_order: deque[Waiter] = deque()
        self._in_flight = InFlight()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False
        self._last_tick = self._clock.now()
        self._arrivals = [0] * len(PRIORITIES)
        self._dealt = [0] * len(PRIORITIES)
        self._shares = [1.0 / len(PRIORITIES)] * len(PRIORITIES)
        self._shed_cohorts = [0] * len(PRIORITIES)
        self._waits: list[float] = []
        self._saturated = False
        self._service_time = 0.0
        self.shed_fraction = 0.0
        self.queue_delay = 0.0
        self.shed_by_class = dict.fromkeys(PRIORITIES, 0)
        self.rejected_queue_full = 0
        self.expired_in_queue = 0
        self.skipped_client_gone = 0

    @property
    def limit(self) -> int:
        return self.tuner.limit

    @property
    def capacity(self) -> int:
        return self.tuner.limit + self._queue.capacity

    @property
    def backend_concurrency(self) -> int:
        return self.tuner.limit

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._last_tick = self._clock.now()

    async def submit(self, query: Query) -> Answer:
        loop = self._loop or asyncio.get_running_loop()
        check_admissible(query, self._closing, loop)
        now = self._clock.now()
        if now - self._last_tick >= CONTROL_INTERVAL:
            self.tick(now)
        rank = PRIORITY_RANK[query.priority]
        self._arrivals[rank] += 1
        if self._in_flight.count < self.tuner.limit and not self._queue:
            self._in_flight.enter()
            self._record_wait(0.0)
            self._saturated |= self._in_flight.count >= self.tuner.limit
        else:
            self._refuse_below_threshold(rank)
            await self._wait_for_slot(query, rank, loop, now)
        started = self._clock.now()
        try:
            patient = await query_backend(self._backend, query, loop)
        except BackendError:
            self._record_service(self._clock.now() - started)
            raise
        finally:
            self._release()
        self._record_service(self._clock.now() - started)
        return patient

    def _refuse_below_threshold(self, rank: int) -> None:
        """Refuse a request that would have to queue if its cohort is being shed."""
        dealt = self._dealt[rank]
        self._dealt[rank] = dealt + 1
        if COHORT_ORDER[dealt % COHORTS] < self._shed_cohorts[rank]:
            self.shed_by_class[PRIORITIES[rank]] += 1
            raise Rejected(
                f"shedding {PRIORITIES[rank]} requests (queueing delay over target)",
                retry_after=self.retry_after(),
            )

    async def _wait_for_slot(
        self, query: Query, rank: int, loop: asyncio.AbstractEventLoop, now: float
    ) -> None:
        """Queue for an in-flight slot; on return the caller holds one."""
        self._saturated = True
        waiter = Waiter(query, loop.create_future(), now)
        accepted, shed = self._queue.push(waiter, rank)
        if shed is not None and not shed.future.done():
            shed.future.set_exception(Rejected("shed for more urgent work", self.retry_after()))
        if not accepted:
            self.rejected_queue_full += 1
            raise Rejected("queue full", retry_after=self.retry_after())
        self._arrival_order.append(waiter)
        self._admit_waiting()
        try:
            await await_until(waiter.future, query.deadline, loop)
        except DeadlineExceeded:
            self.expired_in_queue += 1
            raise
        except asyncio.CancelledError:
            # Handed a slot just as the handler was cancelled: the slot is ours to give back.
            future = waiter.future
            if future.done() and not future.cancelled() and future.exception() is None:
                self._release()
            raise
        finally:
            del waiter  # it holds the future: the cycle await_until describes

    def _grant_next(self) -> bool:
        """Hand a slot to the next live queued request; False when there is none."""
        while self._queue:
            waiter = self._queue.pop()
            if waiter.future.done():  # expired, cancelled or shed meanwhile
                continue
            if waiter.query.is_client_gone():
                self.skipped_client_gone += 1
                waiter.future.set_exception(ClientGone())
                continue
            self._record_wait(self._clock.now() - waiter.queued_at)
            waiter.future.set_result(None)
            self._prune_arrival_order()
            return True
        return False

    def _admit_waiting(self) -> None:
        """Fill free slots (the limit rose, or a request queued behind only dead ones)."""
        while self._in_flight.count < self.tuner.limit and self._grant_next():
            self._in_flight.enter()

    def _release(self) -> None:
        """Pass the finished request's slot on to a queued one, or give it back."""
        if self._in_flight.count <= self.tuner.limit and self._grant_next():
            return
        self._in_flight.exit()

    def _record_wait(self, seconds: float) -> None:
        if len(self._waits) < MAX_WAIT_SAMPLES:
            self._waits.append(seconds)

    def _record_service(self, seconds: float) -> None:
        self.tuner.record(seconds)
        if self._service_time:
            self._service_time += 0.1 * (seconds - self._service_time)
        else:
            self._service_time = seconds

    def tick(self, now: float) -> None:
        """One controller step: measure the interval's queueing delay, set the threshold and
        let the tuner close its window. Runs from submit; tests call it on a manual clock."""
        # A quiet spell counts in full (up to a minute): the overload it followed is over.
        dt = min(now - self._last_tick, 60.0)
        self._last_tick = now
        self.queue_delay = max(
            percentile(self._waits, 0.9), self._oldest_wait(now), self._expected_wait()
        )
        self._waits.clear()
        self._update_mix()
        error = clamp((self.queue_delay - self.target_delay) / self.target_delay, -1.0, MAX_ERROR)
        pressure = self.controller.update(error, dt)
        self.shed_fraction = 1.0 - math.exp(-pressure)
        self._shed_cohorts = cohorts_to_shed(self.shed_fraction, self._shares)
        self.tuner.update(self._saturated)
        self._saturated = self._in_flight.count >= self.tuner.limit
        self._queue.capacity = self._queue_bound()
        self._admit_waiting()

    def _expected_wait(self) -> float:
        """How long a request queued now would wait, by Little's law."""
        return len(self._queue) * self._service_time / self.tuner.limit

    def _queue_bound(self) -> int:
        """QUEUE_BOUND target delays' worth of queue, within [1, --queue-size]; before the
        first service time is known, as many as the limit (one service time's worth)."""
        if self._service_time <= 0:
            return min(self.config.queue_size, self.tuner.limit)
        room = self.tuner.limit * QUEUE_BOUND * self.target_delay / self._service_time
        return max(1, min(self.config.queue_size, math.ceil(room)))

    def _prune_arrival_order(self) -> None:
        order = self._arrival_order
        while order and order[0].future.done():
            order.popleft()

    def _oldest_wait(self, now: float) -> float:
        self._prune_arrival_order()
        order = self._arrival_order
        return now - order[0].queued_at if order else 0.0

    def _live_queued(self) -> int:
        """Queued requests still waiting (the queue may hold expired ones until popped)."""
        return sum(1 for waiter in self._arrival_order if not waiter.future.done())

    def shedding_by_class(self) -> dict[str, float]:
        """The share of each class's cohorts the threshold refuses right now."""
        return {name: self._shed_cohorts[rank] / COHORTS for rank, name in enumerate(PRIORITIES)}

    def _update_mix(self) -> None:
        total = sum(self._arrivals)
        if total:
            for rank, count in enumerate(self._arrivals):
                self._shares[rank] += MIX_SMOOTHING * (count / total - self._shares[rank])
        self._arrivals = [0] * len(PRIORITIES)

    def retry_after(self) -> float:
        """Seconds until the current backlog should have drained (at least 1)."""
        backlog = len(self._queue) + self._in_flight.count
        return max(1.0, math.ceil(backlog * self._service_time / self.tuner.limit))

    def stats(self) -> PatternStats:
        return {
            "name": self.name,
            "in_flight": self._in_flight.count + self._live_queued(),
            "peak_in_flight": self._in_flight.peak,
            "limit": self.tuner.limit,
            "queued": self._live_queued(),
            "queued_by_priority": self._queue.depth_by_class(),
            "shed_for_priority": self._queue.shed,
            "queue_capacity": self._queue.capacity,
            "workers": None,
            "workers_busy": None,
            "rejected_queue_full": self.rejected_queue_full,
            "expired_in_queue": self.expired_in_queue,
            "skipped_client_gone": self.skipped_client_gone,
            "shed_fraction": round(self.shed_fraction, 4),
            "shed_by_threshold": sum(self.shed_by_class.values()),
            "shed_by_class": dict(self.shed_by_class),
            "shedding_by_class": self.shedding_by_class(),
            "queue_delay_ms": round(self.queue_delay * 1000, 3),
            "target_delay_ms": round(self.target_delay * 1000, 3),
            "service_p90_ms": round(self.tuner.last_p90 * 1000, 3),
            "baseline_p90_ms": round(self.tuner.baseline * 1000, 3),
            "object_pool": None,
        }

    async def shutdown(self, drain_timeout: float) -> None:
        self._closing = True
        await self._in_flight.wait_idle(drain_timeout)
        for waiter in self._queue.drain():
            if not waiter.future.done():
                waiter.future.set_exception(Rejected("server shut down before the request ran"))
        self._arrival_order.clear()
