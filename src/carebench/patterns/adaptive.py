"""adaptive: a concurrency limit that discovers the backend's capacity (Netflix
concurrency-limits, Envoy's adaptive concurrency filter).

Requests beyond the current limit are rejected at once (503). Every answered request feeds
the limit algorithm (`--limit-algorithm gradient2|aimd|vegas`) with its round-trip time and
the number in flight when it started, so the limit rises while latency stays flat and falls
when latency inflates. As in Netflix's integrations, a request past its deadline is fed as
dropped (the servlet filter and gRPC server count only timeouts), and a database error is
not fed at all (the servlet filter's "ignore"): a query that failed says nothing about
queueing, and an outage's instant failures would teach a no-load RTT near zero.
"""

from __future__ import annotations

from carebench.backends.base import Backend
from carebench.errors import DeadlineExceeded, PatientNotFound, Rejected
from carebench.limits.base import create_limit
from carebench.loop_clock import LoopClock, RunningLoopClock
from carebench.models import Answer, Query
from carebench.patterns.base import PatternConfig, check_admissible, query_backend
from carebench.patterns.inflight import InFlight
from carebench.patterns.stats import PatternStats
from carebench.responses import PlainResponseEncoder, ResponseEncoder


class AdaptivePattern:
    """Admit while in flight < the algorithm's limit; learn the limit from every response."""

    name = "adaptive"
    bounded = True

    def __init__(
        self, backend: Backend, config: PatternConfig, loop_clock: LoopClock | None = None
    ) -> None:
        self._backend = backend
        self._loop_clock = loop_clock or RunningLoopClock()
        self.algorithm = create_limit(config.limit_algorithm)
        self.encoder: ResponseEncoder = PlainResponseEncoder()
        self._in_flight = InFlight()
        self._closing = False
        self.rejected = 0
        self.min_rtt = 0.0
        self.sample_rtt = 0.0

    @property
    def limit(self) -> int:
        return self.algorithm.limit

    @property
    def capacity(self) -> int:
        return self.algorithm.limit

    @property
    def backend_concurrency(self) -> int:
        return self.algorithm.limit

    async def start(self) -> None:
        """Nothing to start."""

    async def submit(self, query: Query) -> Answer:
        check_admissible(query, self._closing)
        if self._in_flight.count >= self.algorithm.limit:
            self.rejected += 1
            raise Rejected(f"adaptive concurrency limit ({self.algorithm.limit}) reached")
        in_flight = self._in_flight.enter() + 1
        started = self._loop_clock.now()
        try:
            answer = await query_backend(self._backend, query)
        except DeadlineExceeded:
            self._finish(started, in_flight, dropped=True)
            raise
        except PatientNotFound:  # an answer like any other, from a query that ran
            self._finish(started, in_flight, dropped=False)
            raise
        except BaseException:
            self._in_flight.exit()
            raise
        self._finish(started, in_flight, dropped=False)
        return answer

    def _finish(self, started: float, in_flight: int, dropped: bool) -> None:
        self._in_flight.exit()
        self._observe(self._loop_clock.now() - started, in_flight, dropped)

    def _observe(self, rtt: float, in_flight: int, dropped: bool) -> None:
        self.sample_rtt = rtt
        if not dropped and (self.min_rtt == 0.0 or rtt < self.min_rtt):
            self.min_rtt = rtt
        self.algorithm.on_sample(rtt, in_flight, dropped)

    def stats(self) -> PatternStats:
        return {
            "name": self.name,
            "in_flight": self._in_flight.count,
            "peak_in_flight": self._in_flight.peak,
            "limit": self.algorithm.limit,
            "queued": 0,
            "queue_capacity": None,
            "workers": None,
            "workers_busy": None,
            "min_rtt_ms": round(self.min_rtt * 1000, 3),
            "sample_rtt_ms": round(self.sample_rtt * 1000, 3),
            "rejected_at_limit": self.rejected,
            "algorithm": self.algorithm.stats(),
            "object_pool": None,
        }

    async def shutdown(self, drain_timeout: float) -> None:
        self._closing = True
        await self._in_flight.wait_idle(drain_timeout)
