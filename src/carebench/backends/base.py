"""The Backend protocol every data source implements, and its registry by name."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NotRequired, Protocol, TypedDict, runtime_checkable

from carebench.models import ClinicalRecord, Patient
from carebench.registry import Registry


class BackendHealth(TypedDict):
    """`/health`'s view of the backend, from counters and connection state only."""

    #: healthy, degraded, or down (a real database that cannot be reached right now).
    status: str
    backend: str
    total_queries: int
    total_errors: int
    profile: NotRequired[str]
    #: The circuit breaker's state, when one guards the backend.
    circuit_breaker: NotRequired[str]
    #: The --faults fault in effect now (e.g. "slow x5"), when one is.
    fault: NotRequired[str]


class RetryStats(TypedDict):
    max: int
    retried: int
    gave_up: int


class BreakerStats(TypedDict):
    state: str
    consecutive_failures: int
    threshold: int
    reset_after_seconds: float
    fast_failures: int
    #: "closed->open" etc. -> how often.
    transitions: dict[str, int]


class FaultWindowStats(TypedDict):
    """One window of the --faults schedule, in seconds since the schedule's clock started."""

    kind: str
    #: "outage", "slow x5", "errors 50%".
    label: str
    start_seconds: float
    #: None: the fault lasts until the server stops.
    end_seconds: float | None


class FaultStats(TypedDict):
    """The --faults schedule and what it did so far."""

    schedule: list[FaultWindowStats]
    #: Seconds since the schedule's clock started (when the server began serving); None
    #: before that.
    elapsed_seconds: float | None
    #: The window in effect now; None when none is.
    active: FaultWindowStats | None
    #: kind -> queries that fault changed (failed, slowed, or failed at random).
    injected: dict[str, int]


class BackendStats(TypedDict):
    """A backend's counters and capacity state for /metrics. The simulator's capacity model
    fills the pool fields; the resilience wrappers add `retries` and `circuit_breaker`, and
    a --faults schedule `faults`."""

    backend: str
    total_queries: int
    total_errors: int
    profile: NotRequired[str]
    pool_exhausted: NotRequired[int]
    active_queries: NotRequired[int]
    peak_active_queries: NotRequired[int]
    waiting_for_connection: NotRequired[int]
    pool_size: NotRequired[int | None]
    retries: NotRequired[RetryStats]
    circuit_breaker: NotRequired[BreakerStats]
    faults: NotRequired[FaultStats]


@runtime_checkable
class Backend(Protocol):
    """Where patient records come from (simulated, or a real database)."""

    name: str

    async def get_patient(self, patient_id: str, deadline: float | None = None) -> Patient:
        """The record for `patient_id`; raises `BackendError` when the backend fails.

        `deadline` (event-loop time) lets wrappers such as retries stay within the request's
        budget; the caller still enforces it.
        """
        ...

    async def get_patients(
        self, patient_ids: Sequence[str], deadline: float | None = None
    ) -> tuple[Patient, ...]:
        """The records of those of `patient_ids` that exist, in their order, in one query
        (FHIR search by `_id`); unknown ids are left out, not an error."""
        ...

    async def get_clinical_record(
        self, patient_id: str, deadline: float | None = None
    ) -> ClinicalRecord:
        """The patient with its conditions, medications and allergies, in one query (FHIR
        `$everything`); `PatientNotFound` for an unknown id."""
        ...

    def health(self) -> BackendHealth:
        """Health without running a query (so it cannot fail at random)."""
        ...

    def stats(self) -> BackendStats:
        """Counters and state for /metrics."""
        ...

    async def start(self) -> None:
        """Open connections or files; `BackendUnavailable` (naming the fix) when it cannot."""
        ...

    async def close(self) -> None:
        """Release connections and files."""
        ...


#: name -> "module:Class", imported only when chosen so optional drivers (asyncpg) stay
#: optional. Each class has `from_settings(BackendConfig, SimulatorConfig)` and `seed`.
BACKENDS = Registry(
    "--backend",
    "backend",
    {
        "simulator": "carebench.backends.simulator:SimulatedBackend",
        "sqlite": "carebench.backends.sqlite:SqliteBackend",
        "postgres": "carebench.backends.postgres:PostgresBackend",
    },
)


def backend_class(name: str) -> type[Any]:
    """The class registered as `name`, importing its module only now."""
    cls: type[Any] = BACKENDS.load(name)
    return cls
