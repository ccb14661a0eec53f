"""Fixtures that build every registered pattern in front of a controllable backend."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

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


@pytest.fixture(params=pattern_names())
def pattern_name(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


BOUNDED = [name for name in pattern_names() if pattern_class(name).bounded]


@pytest.fixture(params=BOUNDED)
async def bounded(request: pytest.FixtureRequest, backend: GatedBackend) -> AsyncIterator[Pattern]:
    """Each pattern that bounds concurrency (has workers and a queue)."""
    built = create_pattern(request.param, backend, PatternConfig(WORKERS, QUEUE_SIZE))
    await built.start()
    yield built
    backend.release()
    await built.shutdown(drain_timeout=1.0)


@pytest.fixture
def backend() -> GatedBackend:
    return GatedBackend()


@pytest.fixture
async def pattern(pattern_name: str, backend: GatedBackend) -> AsyncIterator[Pattern]:
    built = create_pattern(pattern_name, backend, PatternConfig(WORKERS, QUEUE_SIZE))
    await built.start()
    yield built
    backend.release()
    await built.shutdown(drain_timeout=1.0)


def query(patient_id: str = "P12345", timeout: float = 5.0) -> Query:
    """A query due `timeout` seconds from now on the running loop's clock."""
    return Query(patient_id, asyncio.get_running_loop().time() + timeout, f"req-{patient_id}")
