"""Object reuse in the optimized pattern: real recycling, honest counts, no data leaks."""

from __future__ import annotations

import asyncio
import random

import msgspec

from carebench.backends.simulator import SimulatedBackend, SimulatorConfig
from carebench.errors import DeadlineExceeded, Rejected
from carebench.models import Patient
from carebench.patterns.base import PatternConfig
from carebench.patterns.optimized import OptimizedPattern
from tests.patterns.conftest import query


async def test_jobs_are_recycled_and_never_leak_between_requests() -> None:
    """Under concurrency with timeouts, each answer carries its own patient and jobs recycle."""
    backend = SimulatedBackend(
        SimulatorConfig(min_latency=0.0, max_latency=0.004, error_rate=0.0, profile="ideal", seed=7)
    )
    pattern = OptimizedPattern(backend, PatternConfig(workers=4, queue_size=400))
    await pattern.start()
    rng = random.Random(3)
    ids = [f"P{i:05d}" for i in range(300)]
    timeouts = [rng.choice((0.001, 0.002, 5.0)) for _ in ids]
    results = await asyncio.gather(
        *(pattern.submit(query(pid, t)) for pid, t in zip(ids, timeouts, strict=True)),
        return_exceptions=True,
    )
    await pattern.shutdown(drain_timeout=2.0)
    answered = 0
    for pid, result in zip(ids, results, strict=True):
        if isinstance(result, DeadlineExceeded | Rejected):
            continue
        assert isinstance(result, Patient), result
        body = msgspec.json.decode(pattern.encoder.encode_patient(result, f"r-{pid}"))
        assert body["patient"]["id"] == result.id == pid
        assert body["request_id"] == f"r-{pid}"
        answered += 1
    jobs = pattern.jobs.stats()
    assert answered > 0
    assert jobs["misses"] == jobs["created"]
    assert pattern.jobs.idle == jobs["created"], "every job went back to the pool"


async def test_second_round_reuses_pooled_jobs() -> None:
    """Jobs released by one burst serve the next: the second burst's queued requests all hit
    (the two that find an idle worker run in its slot and need no job)."""
    backend = SimulatedBackend(SimulatorConfig(0.0, 0.0, 0.0, profile="ideal"))
    pattern = OptimizedPattern(backend, PatternConfig(workers=2, queue_size=50))
    await pattern.start()
    await asyncio.gather(*(pattern.submit(query(f"A{i}")) for i in range(20)))
    created = pattern.jobs.created
    await asyncio.gather(*(pattern.submit(query(f"B{i}")) for i in range(20)))
    await pattern.shutdown(drain_timeout=1.0)
    assert pattern.jobs.created == created
    assert pattern.jobs.hits == 20 - 2
    pool = pattern.stats()["object_pool"]
    assert pool is not None
    assert pool["hits"] == pattern.jobs.hits + pattern.response_encoder.pool.hits
