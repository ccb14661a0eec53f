"""optimized: workerpool plus object reuse (the reference's worker pool + sync.Pool).

Two pools, both scrubbed on release:

* jobs (query + future holder) live across awaits, so the pool grows to the number of
  requests in flight and is recycled only when both the handler and the worker let go;
* response slots (a GC-untracked response struct and an output buffer for
  `msgspec`'s `encode_into`). Encoding is synchronous on one event loop, so one slot
  serves everyone: the hit rate is near 100 % by construction, not by luck.
"""

from __future__ import annotations

import asyncio

from carebench.backends.base import Backend
from carebench.loop_clock import LoopClock
from carebench.models import Answer, Query
from carebench.patterns.base import PatternConfig
from carebench.patterns.pooling import ObjectPool, PooledResponseEncoder
from carebench.patterns.stats import PatternStats
from carebench.patterns.workerpool import Job, WorkerPoolPattern


def scrub_job(job: Job) -> None:
    job.query = None
    job.future = None
    job.holders = 0


class OptimizedPattern(WorkerPoolPattern):
    """A worker pool that recycles its job objects and response buffers."""

    name = "optimized"

    def __init__(
        self, backend: Backend, config: PatternConfig, loop_clock: LoopClock | None = None
    ) -> None:
        super().__init__(backend, config, loop_clock)
        self.jobs: ObjectPool[Job] = ObjectPool(Job, scrub_job)
        self.response_encoder = PooledResponseEncoder()
        self.encoder = self.response_encoder

    def _make_job(self, query: Query, future: asyncio.Future[Answer]) -> Job:
        job = self.jobs.acquire()
        job.query, job.future, job.holders = query, future, 1
        return job

    def _release(self, job: Job) -> None:
        job.holders -= 1
        if job.holders == 0:
            self.jobs.release(job)

    def stats(self) -> PatternStats:
        stats = super().stats()
        stats["object_pool"] = {
            "jobs": self.jobs.stats(),
            "responses": self.response_encoder.stats(),
            "hits": self.jobs.hits + self.response_encoder.pool.hits,
            "misses": self.jobs.misses + self.response_encoder.pool.misses,
        }
        return stats
