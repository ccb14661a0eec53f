"""codel: a worker pool whose queue follows controlled delay with adaptive LIFO, as Facebook
applied CoDel to server queues ("Fail at Scale", ACM Queue 2015).

Admission is workerpool's (an idle worker, else the bounded priority queue, else 503). What
changes is how long a request may wait and in which order the queue is served:

* While the queue is healthy a queued request may wait `--codel-interval` (100 ms), and each
  class is served oldest first (FIFO).
* Once the queue has stood, i.e. not been empty for a whole interval, it is congested: a
  request may wait only `--codel-target` (5 ms), and each class is served newest first
  (adaptive LIFO: the oldest are the likeliest to have been given up on, the newest the
  likeliest to meet the short timeout). Critical still goes before standard before batch.
* The queue is healthy again once a whole interval has passed with no request shed. Not as
  soon as it is empty: shedding a standing queue empties it at once, and under overload the
  refused clients are back within milliseconds, to a FIFO queue with a 100 ms timeout that
  stands again (measured: 11 such cycles a second at 100 clients, most refusals after
  ~100 ms of waiting). CoDel proper also remembers a recent episode when it re-enters one.

A request that has waited longer than the current timeout is shed: 503 with Retry-After,
counted in `shed_queue_timeout`. The timeout is the state's, not fixed when the request was
queued (the paper assigns it at enqueue): when the queue turns congested, what has waited
longer than the target is the standing queue CoDel exists to drop, and its clients hear so at
once rather than up to an interval later. So a healthy queue never sheds by itself: a request
that waits more than an interval has kept the queue standing that long, and is shed as the
queue turns congested. Shedding is checked whenever a request arrives to a busy pool and
whenever a worker takes work, at the old end of each class (a class is in arrival order, so
this looks at one request per class beyond those shed). With neither arrivals nor free
workers nothing is shed; a request still never waits past its deadline (504).

Why "emptied" rather than CoDel proper's "lowest delay of the requests served over an
interval above target": under LIFO the request served is the newest, whose delay is near zero
by construction, so that measure would call the queue healthy at its first LIFO dispatch and
flap between the two modes. The paper's rule is used instead ("if the queue has not been
empty for the last N ms, the time spent in the queue is limited to M ms"): an empty queue is
a queueing delay of zero, below any target.

Times are read from the injected `LoopClock`, so tests drive the state machine by hand.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from carebench.backends.base import Backend
from carebench.errors import ClientGone, Rejected
from carebench.loop_clock import LoopClock, RunningLoopClock
from carebench.models import Answer, Query
from carebench.patterns.base import PatternConfig
from carebench.patterns.stats import PatternStats
from carebench.patterns.workerpool import Job, WorkerPoolPattern


@dataclass(slots=True)
class QueuedJob(Job):
    """A job and when it entered the queue (on the pattern's clock)."""

    queued_at: float = 0.0


class CoDelState:
    """Whether the queue is congested: it turns so once it has stood (not been empty) for more
    than an interval, and is healthy again once an interval has passed with nothing shed."""

    def __init__(self, target: float, interval: float) -> None:
        self.target = target
        self.interval = interval
        #: Since when the queue has held requests without being emptied; None while empty.
        self.standing_since: float | None = None
        self.congested = False
        #: The last shed (or the start of congestion): the calm interval is counted from it.
        self.last_shed = 0.0
        #: Times the queue turned congested.
        self.episodes = 0

    def congested_at(self, now: float) -> bool:
        """The state at `now`, without moving to it."""
        if self.congested:
            return now - self.last_shed <= self.interval
        since = self.standing_since
        return since is not None and now - since > self.interval

    def update(self, now: float) -> bool:
        """Move to the state at `now` and return whether it is congested."""
        congested = self.congested_at(now)
        if congested and not self.congested:
            self.episodes += 1
            self.last_shed = now
        elif self.congested and not congested and self.standing_since is not None:
            self.standing_since = now  # what waits now starts standing afresh
        self.congested = congested
        return congested

    @property
    def timeout(self) -> float:
        """How long a request may wait in the queue in the current state."""
        return self.target if self.congested else self.interval

    def queued(self, now: float) -> None:
        """A request entered the queue at `now`: it starts standing unless it already was."""
        if self.standing_since is None:
            self.standing_since = now

    def emptied(self) -> None:
        """The workers left the queue empty: it no longer stands."""
        self.standing_since = None

    def shed(self, now: float) -> None:
        """A request was shed at `now`: the queue is not calm yet."""
        self.last_shed = now


class CoDelPattern(WorkerPoolPattern):
    """A worker pool with CoDel queue timeouts (interval, then target) and adaptive LIFO."""

    name = "codel"

    def __init__(
        self, backend: Backend, config: PatternConfig, loop_clock: LoopClock | None = None
    ) -> None:
        super().__init__(backend, config, loop_clock)
        self._clock = loop_clock or RunningLoopClock()
        self.codel = CoDelState(config.codel_target, config.codel_interval)
        self.shed_queue_timeout = 0
        self.served_lifo = 0

    def _make_job(self, query: Query, future: asyncio.Future[Answer]) -> Job:
        return QueuedJob(query, future, holders=1)

    def _dispatch(self, job: Job, rank: int) -> bool:
        now = self._clock.now()
        self.codel.update(now)
        self._shed_expired(now)
        if isinstance(job, QueuedJob):
            job.queued_at = now
        accepted = super()._dispatch(job, rank)
        if accepted:
            self.codel.queued(now)
        return accepted

    def _pop_queued(self) -> Job | None:
        now = self._clock.now()
        congested = self.codel.update(now)
        self._shed_expired(now)
        if not self._queue:
            # Nothing waits for this free worker. (A worker is idle only after finding the
            # queue empty here, so a request that finds one idle needs no check of its own.)
            self.codel.emptied()
            return None
        if congested:
            self.served_lifo += 1
        job = self._queue.pop(newest=congested)
        if not self._queue:
            self.codel.emptied()
        return job

    def _shed_expired(self, now: float) -> None:
        """Shed every request that waited longer than the current timeout."""
        if not self._queue:
            return
        oldest_allowed = now - self.codel.timeout
        for job in self._queue.remove_oldest_while(lambda job: _queued_at(job) < oldest_allowed):
            self._shed(job, now)

    def _shed(self, job: Job, now: float) -> None:
        """Answer a request taken out of the queue for waiting too long, and let go of it."""
        query, future = job.query, job.future
        if future is None or future.done():  # its deadline passed and the handler left
            self.expired_in_queue += 1
            self._release(job)
            return
        if query is not None and query.is_client_gone():
            self.skipped_client_gone += 1
            self._refuse(job, ClientGone())
            return
        self.shed_queue_timeout += 1
        self.codel.shed(now)
        waited_ms = (now - _queued_at(job)) * 1000
        timeout_ms = self.codel.timeout * 1000
        reason = f"waited {waited_ms:.0f} ms in the queue, over its {timeout_ms:g} ms timeout"
        self._refuse(job, Rejected(reason, retry_after=self.retry_after()))

    def stats(self) -> PatternStats:
        stats = super().stats()
        congested = self.codel.congested_at(self._clock.now())
        timeout = self.codel.target if congested else self.codel.interval
        stats["congested"] = congested
        stats["queue_timeout_ms"] = round(timeout * 1000, 3)
        stats["shed_queue_timeout"] = self.shed_queue_timeout
        stats["congested_episodes"] = self.codel.episodes
        stats["served_lifo"] = self.served_lifo
        return stats


def _queued_at(job: Job) -> float:
    return job.queued_at if isinstance(job, QueuedJob) else 0.0
