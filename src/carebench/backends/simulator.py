"""The simulated database: the reference's latency/error model plus a capacity model.

Profile `ideal` is the reference exactly: each query sleeps uniform[min, max] and fails with
probability `error_rate`; capacity is unlimited.

Profile `realistic` (the default) adds what makes real databases punish excess concurrency:

* a pool of `pool_size` connections; a query waits for a free one and fails with
  "connection pool exhausted" if none frees up within `pool_timeout` seconds;
* service time that inflates with the number N of queries running at once, following
  Gunther's Universal Scalability Law: latency = base * (1 + sigma*(N-1) + kappa*N*(N-1)),
  where sigma is contention (serialised work, e.g. locks) and kappa is coherency (crosstalk,
  e.g. cache-line and latch traffic). Throughput N/latency peaks at N* = sqrt((1-sigma)/kappa)
  and *falls* beyond it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import random
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from carebench.backends.base import BackendHealth, BackendStats
from carebench.backends.pool import pool_stats, wait_for_connection
from carebench.backends.records import synthetic_clinical, synthetic_patient
from carebench.errors import BackendError, ConfigError
from carebench.models import ClinicalRecord, Patient
from carebench.registry import check_choice
from carebench.settings import FLOAT, INT, MILLISECONDS, SECONDS, setting

if TYPE_CHECKING:
    from carebench.backends.config import BackendConfig

PROFILES = ("realistic", "ideal")
#: The reference's simulated database: 50-100 ms per query, 5 % of queries fail.
SIMULATOR_LATENCY = (0.050, 0.100)
SIMULATOR_ERROR_RATE = 0.05

Sleep = Callable[[float], Awaitable[None]]
K = TypeVar("K")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """Settings of the simulated database; latencies in seconds."""

    min_latency: float | None = setting(
        None,
        "--min-latency",
        "minimum query latency (default 50 ms on the simulator; on a real database, "
        "extra latency injected into each query, default none)",
        MILLISECONDS,
    )
    max_latency: float | None = setting(
        None,
        "--max-latency",
        "maximum query latency (default 100 ms on the simulator, none added on a real database)",
        MILLISECONDS,
    )
    error_rate: float | None = setting(
        None,
        "--error-rate",
        "probability a query fails (default 0.05 on the simulator, 0 on a real database)",
        FLOAT,
    )
    profile: str = setting(
        "realistic",
        "--db-profile",
        "realistic: finite pool + contention; ideal: the reference's unlimited model",
        choices=PROFILES,
    )
    pool_size: int = setting(100, "--db-pool-size", "connections in the pool", INT)
    pool_timeout: float = setting(
        2.0, "--db-pool-timeout", "how long a query waits for a connection", SECONDS
    )
    contention: float = setting(0.03, "--db-contention", "USL contention sigma", FLOAT)
    coherency: float = setting(0.001, "--db-coherency", "USL coherency kappa", FLOAT)
    seed: int | None = setting(
        None, "--seed", "seed for reproducible latency, errors and load (default random)", INT
    )

    def __post_init__(self) -> None:
        if self.min_latency is not None and self.min_latency < 0:
            raise ConfigError(f"--min-latency ({self.min_latency * 1000:g}) must be >= 0")
        low, high = self.min_latency, self.max_latency
        if low is not None and high is not None and low > high:
            raise ConfigError(
                f"--min-latency ({low * 1000:g}) must be <= --max-latency ({high * 1000:g})"
            )
        if self.error_rate is not None and not 0.0 <= self.error_rate <= 1.0:
            raise ConfigError(f"--error-rate ({self.error_rate:g}) must be between 0 and 1")
        check_choice("--db-profile", "profile", self.profile, PROFILES)
        if self.pool_size < 1:
            raise ConfigError(f"--db-pool-size ({self.pool_size}) must be >= 1")
        if self.pool_timeout <= 0:
            raise ConfigError(f"--db-pool-timeout ({self.pool_timeout:g}) must be > 0")
        if not 0.0 <= self.contention < 1.0:
            raise ConfigError(f"--db-contention ({self.contention:g}) must be in [0, 1)")
        if self.coherency < 0:
            raise ConfigError(f"--db-coherency ({self.coherency:g}) must be >= 0")

    def resolved(self, real: bool = False) -> SimulatorConfig:
        """This config with the unset latency and error rate filled in: the reference's
        50-100 ms and 5 % for the simulator, nothing injected for a real database."""
        if real:
            low = self.min_latency or 0.0
            high = self.max_latency if self.max_latency is not None else low
            errors = self.error_rate or 0.0
        else:
            low = SIMULATOR_LATENCY[0] if self.min_latency is None else self.min_latency
            high = SIMULATOR_LATENCY[1] if self.max_latency is None else self.max_latency
            errors = SIMULATOR_ERROR_RATE if self.error_rate is None else self.error_rate
        return dataclasses.replace(self, min_latency=low, max_latency=high, error_rate=errors)

    @property
    def latency_range(self) -> tuple[float, float]:
        """(min, max) latency in seconds, once resolved."""
        return self.min_latency or 0.0, self.max_latency or 0.0

    @property
    def limited(self) -> bool:
        """Whether the capacity model (pool and USL inflation) applies."""
        return self.profile != "ideal"

    def slowdown(self, concurrent: int) -> float:
        """USL latency multiplier with `concurrent` queries running (1.0 when ideal)."""
        if not self.limited or concurrent <= 1:
            return 1.0
        n = concurrent
        return 1.0 + self.contention * (n - 1) + self.coherency * n * (n - 1)

    def peak_concurrency(self) -> float:
        """Concurrency at which throughput peaks (infinite when ideal or kappa is 0)."""
        if not self.limited or self.coherency == 0:
            return math.inf
        return math.sqrt((1.0 - self.contention) / self.coherency)


def _patients(patient_ids: tuple[str, ...]) -> tuple[Patient, ...]:
    return tuple(synthetic_patient(patient_id) for patient_id in patient_ids)


class SimulatedBackend:
    """An in-memory database whose latency, errors and capacity follow `SimulatorConfig`."""

    name = "simulator"

    def __init__(self, config: SimulatorConfig | None = None, sleep: Sleep = asyncio.sleep):
        self.config = (config or SimulatorConfig()).resolved()
        self._sleep = sleep
        self._rng = random.Random(self.config.seed)
        self._pool = asyncio.Semaphore(self.config.pool_size) if self.config.limited else None
        self.queries = 0
        self.errors = 0
        self.pool_exhausted = 0
        self.active = 0
        self.peak_active = 0
        self.waiting = 0

    # Plain functions returning the query's coroutine: no extra frame on the hot path.
    def get_patient(
        self, patient_id: str, deadline: float | None = None
    ) -> Coroutine[Any, Any, Patient]:
        """Sleep like a database would, then return the record or fail."""
        return self._query(synthetic_patient, patient_id)

    def get_patients(
        self, patient_ids: Sequence[str], deadline: float | None = None
    ) -> Coroutine[Any, Any, tuple[Patient, ...]]:
        """One simulated query for all of `patient_ids` (every valid id exists here)."""
        return self._query(_patients, tuple(patient_ids))

    def get_clinical_record(
        self, patient_id: str, deadline: float | None = None
    ) -> Coroutine[Any, Any, ClinicalRecord]:
        """One simulated query for the patient and its clinical detail."""
        return self._query(synthetic_clinical, patient_id)

    async def _query(self, answer: Callable[[K], T], key: K) -> T:
        self.queries += 1
        if self._pool is None:
            return await self._run_query(answer, key)
        await self._acquire_connection()
        try:
            return await self._run_query(answer, key)
        finally:
            self._pool.release()

    async def _acquire_connection(self) -> None:
        assert self._pool is not None
        await wait_for_connection(self._pool, self.config.pool_size, self.config.pool_timeout, self)

    async def _run_query(self, answer: Callable[[K], T], key: K) -> T:
        cfg = self.config
        self.active += 1
        self.peak_active = max(self.peak_active, self.active)
        try:
            base = self._rng.uniform(*cfg.latency_range)
            await self._sleep(base * cfg.slowdown(self.active))
            if self._rng.random() < (cfg.error_rate or 0.0):
                self.errors += 1
                raise BackendError("simulated database error")
            return answer(key)
        finally:
            self.active -= 1

    def health(self) -> BackendHealth:
        """Backend health from counters only: it never runs a (randomly failing) query."""
        return {
            "status": "healthy",
            "backend": self.name,
            "profile": self.config.profile,
            "total_queries": self.queries,
            "total_errors": self.errors,
        }

    def stats(self) -> BackendStats:
        """Counters and capacity state for /metrics."""
        cfg = self.config
        stats = pool_stats(self.name, self, cfg.pool_size if cfg.limited else None)
        return {**stats, "profile": cfg.profile}

    @classmethod
    def from_settings(cls, backend: BackendConfig, database: SimulatorConfig) -> SimulatedBackend:
        return cls(database)

    @classmethod
    async def seed(cls, backend: BackendConfig, patients: int) -> int:
        raise ConfigError("the simulator needs no data: it makes up every record on request")

    async def start(self) -> None:
        """Nothing to open: the simulator holds no files or sockets."""

    async def close(self) -> None:
        """Nothing to release: the simulator holds no files or sockets."""
