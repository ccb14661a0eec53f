"""Fixtures that build every registered pattern in front of a controllable backend."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from carebench.loop_clock import ManualLoopClock
from carebench.models import Query
from carebench.patterns.base import (
    Pattern,
    PatternConfig,
    create_pattern,
    pattern_class,
    pattern_names,
)
from tests.fakes import GatedBackend

WORKERS = 2
QUEUE_SIZE = 3
#: Small limits so every bounded pattern fills up quickly; the ManualLoopClock stays frozen,
#: so a token bucket does not refill during a test (deadlines still run on the real loop).
CONFIG = PatternConfig(workers=WORKERS, queue_size=QUEUE_SIZE, limit=WORKERS, burst=4)


@pytest.fixture(params=pattern_names())
def pattern_name(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


QUEUEING = [name for name in pattern_names() if getattr(pattern_class(name), "queues", False)]


@pytest.fixture(params=QUEUEING)
async def queueing(request: pytest.FixtureRequest, backend: GatedBackend) -> AsyncIterator[Pattern]:
    """Each pattern that holds requests in a queue in front of its workers."""
    built = create_pattern(request.param, backend, CONFIG, ManualLoopClock())
    await built.start()
    yield built
    backend.release()
    await built.shutdown(drain_timeout=1.0)


@pytest.fixture
def backend() -> GatedBackend:
    return GatedBackend()


@pytest.fixture
async def pattern(pattern_name: str, backend: GatedBackend) -> AsyncIterator[Pattern]:
    built = create_pattern(pattern_name, backend, CONFIG, ManualLoopClock())
    await built.start()
    yield built
    backend.release()
    await built.shutdown(drain_timeout=1.0)


def query(patient_id: str = "P12345", timeout: float = 5.0) -> Query:
    """A query due `timeout` seconds from now on the running loop's clock."""
    return Query(patient_id, asyncio.get_running_loop().time() + timeout, f"req-{patient_id}")
