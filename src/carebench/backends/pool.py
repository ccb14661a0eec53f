"""Waiting for one of a backend's connections: the same limit and the same 500 everywhere."""

from __future__ import annotations

import asyncio
from typing import Protocol

from carebench.backends.base import BackendStats
from carebench.errors import BackendError


class PoolCounters(Protocol):
    """The counters a backend reports in /metrics about its queries and connection pool."""

    queries: int
    errors: int
    pool_exhausted: int
    active: int
    peak_active: int
    waiting: int


def pool_stats(name: str, counters: PoolCounters, pool_size: int | None) -> BackendStats:
    """The /metrics view every backend with a connection pool gives of it."""
    return {
        "backend": name,
        "total_queries": counters.queries,
        "total_errors": counters.errors,
        "pool_exhausted": counters.pool_exhausted,
        "active_queries": counters.active,
        "peak_active_queries": counters.peak_active,
        "waiting_for_connection": counters.waiting,
        "pool_size": pool_size,
    }


async def wait_for_connection(
    free: asyncio.Semaphore, size: int, patience: float, counters: PoolCounters
) -> None:
    """Take one of `size` connections from `free`, waiting at most `patience` seconds, then
    fail with the "connection pool exhausted" error the simulator and real databases share."""
    counters.waiting += 1
    try:
        async with asyncio.timeout(patience):
            await free.acquire()
        return
    except TimeoutError:
        counters.pool_exhausted += 1
        counters.errors += 1
    finally:
        counters.waiting -= 1
    # Raised outside the except block: raised inside it, the error keeps the TimeoutError as
    # its __context__ (`from None` only hides it), whose traceback holds the asyncio.timeout,
    # which holds the task the error ends up in: a cycle per refused query, left to the
    # server's rare cyclic collections (server/gc_tuning.py).
    raise BackendError(
        f"connection pool exhausted (waited {patience:g}s for one of {size} connections)"
    )
