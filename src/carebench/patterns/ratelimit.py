"""ratelimit: a token bucket (`--rate-limit` per second, `--burst`) in front of a task per
request. Excess requests get 429 with a Retry-After computed from the bucket.

A rate limit bounds arrivals, not concurrency: when the backend slows down, admitted
requests still pile up on it. That contrast with the concurrency limits is the point.
"""

from __future__ import annotations

from carebench.backends.base import Backend
from carebench.errors import RateLimited
from carebench.limits.token_bucket import TokenBucket
from carebench.loop_clock import LoopClock, RunningLoopClock
from carebench.models import Answer, Query
from carebench.patterns.base import PatternConfig, check_admissible, query_backend
from carebench.patterns.inflight import InFlight
from carebench.patterns.stats import PatternStats
from carebench.responses import PlainResponseEncoder, ResponseEncoder


class RateLimitPattern:
    """Admit a request when the bucket has a token; answer 429 otherwise."""

    name = "ratelimit"
    bounded = True

    def __init__(
        self, backend: Backend, config: PatternConfig, loop_clock: LoopClock | None = None
    ) -> None:
        self._backend = backend
        self.bucket = TokenBucket(config.rate_limit, config.burst, loop_clock or RunningLoopClock())
        self.encoder: ResponseEncoder = PlainResponseEncoder()
        self._in_flight = InFlight()
        self._closing = False
        self.rate_limited = 0

    @property
    def capacity(self) -> int:
        return int(self.bucket.tokens)

    @property
    def backend_concurrency(self) -> None:
        return None

    async def start(self) -> None:
        """Nothing to start."""

    async def submit(self, query: Query) -> Answer:
        check_admissible(query, self._closing)
        if not self.bucket.try_take():
            self.rate_limited += 1
            raise RateLimited(
                f"rate limit of {self.bucket.rate:g}/s exceeded", self.bucket.wait_time()
            )
        self._in_flight.enter()
        try:
            return await query_backend(self._backend, query)
        finally:
            self._in_flight.exit()

    def stats(self) -> PatternStats:
        return {
            "name": self.name,
            "in_flight": self._in_flight.count,
            "peak_in_flight": self._in_flight.peak,
            "queued": 0,
            "queue_capacity": None,
            "workers": None,
            "workers_busy": None,
            "rate_limit_per_second": self.bucket.rate,
            "burst": self.bucket.burst,
            "tokens": round(self.bucket.tokens, 3),
            "rate_limited": self.rate_limited,
            "object_pool": None,
        }

    async def shutdown(self, drain_timeout: float) -> None:
        self._closing = True
        await self._in_flight.wait_idle(drain_timeout)
