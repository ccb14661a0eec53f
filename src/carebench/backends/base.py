"""The Backend protocol every data source implements, and its registry by name."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from carebench.models import Patient
from carebench.registry import Registry


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

    def health(self) -> dict[str, Any]:
        """Health without running a query (so it cannot fail at random)."""
        ...

    def stats(self) -> dict[str, Any]:
        """Counters and state for /metrics."""
        ...

    async def close(self) -> None:
        """Release connections and files."""
        ...


#: name -> "module:Class", imported only when chosen so optional drivers stay optional.
BACKENDS = Registry(
    "--backend", "backend", {"simulator": "carebench.backends.simulator:SimulatedBackend"}
)


def backend_class(name: str) -> type[Any]:
    """The class registered as `name`, importing its module only now."""
    cls: type[Any] = BACKENDS.load(name)
    return cls
