"""Waiting for one of a backend's connections: the same limit and the same 500 everywhere."""

from __future__ import annotations

import asyncio
from typing import Protocol

from carebench.errors import BackendError


class PoolCounters(Protocol):
    """The counters a backend reports in /metrics about its connection pool."""

    waiting: int
    pool_exhausted: int
    errors: int


async def wait_for_connection(
    free: asyncio.Semaphore, size: int, patience: float, counters: PoolCounters
) -> None:
    """Take one of `size` connections from `free`, waiting at most `patience` seconds, then
    fail with the "connection pool exhausted" error the simulator and real databases share."""
    counters.waiting += 1
    try:
        async with asyncio.timeout(patience):
            await free.acquire()
    except TimeoutError:
        counters.pool_exhausted += 1
        counters.errors += 1
        raise BackendError(
            f"connection pool exhausted (waited {patience:g}s for one of {size} connections)"
        ) from None
    finally:
        counters.waiting -= 1
