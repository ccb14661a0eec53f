"""Every backend, seeded and started, for the contract suite (tests/backends/test_contract.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from carebench.backends.base import Backend, backend_class
from carebench.backends.config import BackendConfig, create_backend
from carebench.backends.simulator import SimulatorConfig

#: Patients seeded into each real database: P00000..P00299 plus P12345.
CONTRACT_PATIENTS = 300

#: name -> how a test reaches an instance of that backend (`request` reaches session
#: fixtures, such as a running PostgreSQL). A backend joins the contract suite with one line.
BACKEND_CONFIGS: dict[str, Callable[[pytest.FixtureRequest, Path], BackendConfig]] = {
    "simulator": lambda request, tmp_path: BackendConfig("simulator"),
    "sqlite": lambda request, tmp_path: BackendConfig(
        "sqlite", db_path=str(tmp_path / "contract.sqlite3")
    ),
    "postgres": lambda request, tmp_path: BackendConfig(
        "postgres", dsn=request.getfixturevalue("postgres_dsn")
    ),
}


@pytest.fixture(params=list(BACKEND_CONFIGS))
async def started_backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """The parametrised backend, seeded with CONTRACT_PATIENTS when it is a real database,
    with no injected latency or errors; started, and closed afterwards."""
    config = BACKEND_CONFIGS[request.param](request, tmp_path)
    if config.real:
        await backend_class(config.backend).seed(config, CONTRACT_PATIENTS)
    database = SimulatorConfig(min_latency=0, max_latency=0, error_rate=0, seed=0, pool_size=4)
    backend = create_backend(config, database.resolved(real=config.real))
    await backend.start()
    yield backend
    await backend.close()
