"""Which backend serves the records, and where a real database is."""

from __future__ import annotations

from dataclasses import dataclass

from carebench.backends.base import BACKENDS, Backend, backend_class
from carebench.backends.simulator import SimulatorConfig
from carebench.settings import setting

#: The backends that are real databases (the simulator is not).
REAL_BACKENDS = ("sqlite", "postgres")


@dataclass(frozen=True, slots=True)
class BackendConfig:
    """The backend by name; a DSN for PostgreSQL, a file for SQLite."""

    backend: str = setting(
        "simulator",
        "--backend",
        "where records come from: the simulated database or a real one",
        choices=BACKENDS.names,
    )
    dsn: str | None = setting(
        None,
        "--dsn",
        "postgres: connection string, e.g. postgresql://user@127.0.0.1:5432/carebench "
        "(carebench db up prints one)",
        metavar="DSN",
    )
    db_path: str | None = setting(
        None,
        "--db-path",
        "sqlite: the database file (default: carebench.sqlite3 in the user cache directory)",
        metavar="FILE",
    )

    def __post_init__(self) -> None:
        BACKENDS.check(self.backend)

    @property
    def real(self) -> bool:
        """Whether this is a real database (injected latency and errors default to none)."""
        return self.backend in REAL_BACKENDS


def create_backend(backend: BackendConfig, database: SimulatorConfig) -> Backend:
    """A new, not yet started backend of the configured kind (its driver imported now)."""
    created: Backend = backend_class(backend.backend).from_settings(backend, database)
    return created
