"""A backend's failure is freed by reference counting once its caller has handled it.

naive runs each query in a task of its own, which keeps the failure it raised; a failure whose
traceback or context leads back to that task (through an asyncio.timeout) or to a future
holding it (a frame's local) makes a cycle that only the cyclic collector frees, and a server
runs that collector rarely (server/gc_tuning.py). naive's "connection pool exhausted" did so
for every refused query under overload. These tests turn the collector off and check with
weak references that no failure outlives its handler (tests/patterns/test_failure_references.py
checks the patterns the same way).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest

from carebench.backends.base import Backend, backend_class
from carebench.backends.config import create_backend
from carebench.backends.simulator import SimulatorConfig
from carebench.errors import BackendError
from tests.backends.conftest import BACKEND_CONFIGS, CONTRACT_PATIENTS
from tests.patterns.test_failure_references import collector_off

#: Starts the backend under test with a given pool, latency and error rate.
Starter = Callable[[SimulatorConfig], AbstractAsyncContextManager[Backend]]


@pytest.fixture(params=list(BACKEND_CONFIGS))
async def backend_with(request: pytest.FixtureRequest, tmp_path: Path) -> Starter:
    """Start the parametrised backend with a given pool, latency and error rate."""
    config = BACKEND_CONFIGS[request.param](request, tmp_path)
    if config.real:
        await backend_class(config.backend).seed(config, CONTRACT_PATIENTS)

    @asynccontextmanager
    async def started(database: SimulatorConfig) -> AsyncIterator[Backend]:
        backend = create_backend(config, database.resolved(real=config.real))
        await backend.start()
        try:
            yield backend
        finally:
            await backend.close()

    return started


async def in_own_task(query: Awaitable[object]) -> weakref.ref[BackendError]:
    """Run `query` in a task of its own, as naive does, and drop the task once it failed:
    a weak reference to the failure caught."""
    task = asyncio.ensure_future(query)
    try:
        await task
    except BackendError as failure:
        caught = weakref.ref(failure)
    else:
        raise AssertionError("the query was expected to fail")
    finally:
        del task
    # The loop's callback that woke this coroutine holds the task until it returns.
    await asyncio.sleep(0)
    return caught


async def test_pool_exhausted_is_freed_without_the_cyclic_collector(
    backend_with: Starter,
) -> None:
    """A query refused after waiting for the one busy connection leaves no cycle."""
    database = SimulatorConfig(
        min_latency=0.3, max_latency=0.3, error_rate=0, seed=0, pool_size=1, pool_timeout=0.02
    )
    async with backend_with(database) as backend:
        with collector_off():
            busy = asyncio.ensure_future(backend.get_patient("P00001"))
            await asyncio.sleep(0)  # it takes the connection
            refused = await in_own_task(backend.get_patient("P00002"))
            assert backend.stats()["pool_exhausted"] == 1
            assert refused() is None
            await busy


async def test_query_errors_are_freed_without_the_cyclic_collector(backend_with: Starter) -> None:
    """Queries that fail (an injected error; sqlite's comes from its thread) leave no cycle."""
    database = SimulatorConfig(min_latency=0, max_latency=0, error_rate=1.0, seed=0, pool_size=1)
    async with backend_with(database) as backend:
        with collector_off():
            failures = [await in_own_task(backend.get_patient(f"P0000{i}")) for i in range(3)]
            # The last may still be held where a connection keeps its latest query (sqlite's,
            # to interrupt it on close): one per connection, not one per query.
            assert [failure() for failure in failures[:-1]] == [None] * 2
