"""The shape of a pattern's `stats()`: the `pattern_state` of /metrics and of in-process runs.

One shape for every pattern, so /metrics, the Prometheus collector and the load generator's
sampler read the same keys. Keys only some patterns have are `NotRequired`.
"""

from __future__ import annotations

from typing import NotRequired, TypedDict

from carebench.limits.base import LimitStats


class PoolStats(TypedDict):
    """One object pool's accounting: a hit reused a released object, a miss made one."""

    hits: int
    misses: int
    created: int
    idle: int
    hit_rate_percent: float


class ObjectPoolReport(TypedDict):
    """The optimized pattern's pools (jobs, response slots) and their totals."""

    jobs: PoolStats
    responses: PoolStats
    hits: int
    misses: int


class PatternStats(TypedDict):
    """What a pattern admits, queues and refuses right now, and its counters so far."""

    name: str
    in_flight: int
    queued: int
    #: None where the pattern has no queue, no workers or no object pool.
    queue_capacity: int | None
    workers: int | None
    workers_busy: int | None
    object_pool: ObjectPoolReport | None
    peak_in_flight: NotRequired[int]
    #: Concurrency limit (semaphore: fixed; adaptive: the algorithm's current one).
    limit: NotRequired[int]
    rejected_at_limit: NotRequired[int]
    waited_for_permit: NotRequired[int]
    queued_by_priority: NotRequired[dict[str, int]]
    shed_for_priority: NotRequired[int]
    rejected_queue_full: NotRequired[int]
    expired_in_queue: NotRequired[int]
    skipped_client_gone: NotRequired[int]
    rate_limit_per_second: NotRequired[float]
    burst: NotRequired[int]
    tokens: NotRequired[float]
    rate_limited: NotRequired[int]
    min_rtt_ms: NotRequired[float]
    sample_rtt_ms: NotRequired[float]
    algorithm: NotRequired[LimitStats]
    #: shedder: the share of arrivals its controller refuses, least urgent first (0..1).
    shed_fraction: NotRequired[float]
    shed_by_threshold: NotRequired[int]
    shed_by_class: NotRequired[dict[str, int]]
    #: shedder: the share of each class's cohorts its threshold refuses now (0..1).
    shedding_by_class: NotRequired[dict[str, float]]
    #: shedder: p90 queueing delay of the last control interval, and its target.
    queue_delay_ms: NotRequired[float]
    target_delay_ms: NotRequired[float]
    #: shedder: p90 service time of the tuner's last window, and the lowest of its history.
    service_p90_ms: NotRequired[float]
    baseline_p90_ms: NotRequired[float]
    #: codel: whether the queue has stood for an interval (short timeout, LIFO service).
    congested: NotRequired[bool]
    #: codel: how long a request may wait in the queue right now.
    queue_timeout_ms: NotRequired[float]
    shed_queue_timeout: NotRequired[int]
    congested_episodes: NotRequired[int]
    served_lifo: NotRequired[int]
