"""The same schedule on every backend: the simulator, SQLite and PostgreSQL (when its server
binaries are installed) get the same outage, slowdown and error burst on the real clock."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from carebench.backends.base import backend_class
from carebench.backends.config import create_backend
from carebench.backends.records import synthetic_patient
from carebench.backends.simulator import SimulatorConfig
from carebench.errors import BackendError
from carebench.faults.backend import FaultyBackend
from carebench.faults.schedule import parse_schedule
from tests.backends.conftest import BACKEND_CONFIGS, CONTRACT_PATIENTS

#: Each query takes 20 ms (injected on a real database) so that x3 is measurable.
LATENCY = 0.02
SCHEDULE = "at 0s outage for 1000s; at 1000s slow x3 for 1000s; at 2000s errors 100% for 1000s"


@pytest.fixture(params=list(BACKEND_CONFIGS))
async def faulty(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[FaultyBackend]:
    """Each backend, seeded and started, inside a FaultyBackend whose clock the test sets."""
    config = BACKEND_CONFIGS[request.param](request, tmp_path)
    if config.real:
        await backend_class(config.backend).seed(config, CONTRACT_PATIENTS)
    database = SimulatorConfig(LATENCY, LATENCY, 0.0, profile="ideal", pool_size=4, seed=0)
    inner = create_backend(config, database.resolved(real=config.real))
    backend = FaultyBackend(inner, parse_schedule(SCHEDULE))
    await backend.start()
    yield backend
    await backend.close()


def move_to(backend: FaultyBackend, elapsed: float) -> None:
    """Set the schedule's clock `elapsed` seconds in."""
    backend.origin = asyncio.get_running_loop().time() - elapsed


async def timed(backend: FaultyBackend, patient_id: str = "P00001") -> float:
    began = time.perf_counter()
    assert await backend.get_patient(patient_id) == synthetic_patient(patient_id)
    return time.perf_counter() - began


async def test_every_backend_gets_the_schedule(faulty: FaultyBackend) -> None:
    move_to(faulty, 10.0)
    began = time.perf_counter()
    with pytest.raises(BackendError, match=r"^database unreachable"):
        await faulty.get_patient("P00001")
    assert time.perf_counter() - began < LATENCY  # refused, not queried
    assert faulty.health()["status"] == "down"

    move_to(faulty, 3500.0)  # after the last window
    assert faulty.active() is None
    assert await timed(faulty) >= LATENCY * 0.95
    move_to(faulty, 1010.0)
    # The query's own 20 ms or more, then twice its duration again.
    assert await timed(faulty) >= 3 * LATENCY * 0.95

    move_to(faulty, 2010.0)
    with pytest.raises(BackendError, match="injected database error"):
        await faulty.get_patient("P00001")
    assert faulty.injected == {"outage": 1, "slow": 1, "errors": 1}
