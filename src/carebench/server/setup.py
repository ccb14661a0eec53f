"""Everything a server starts with: its own settings, the pattern's, the database's, the
resilience wrappers' and the fault schedule. A load test holds one and hands it to each server
it starts as flags."""

from __future__ import annotations

from dataclasses import dataclass, field

from carebench.audit.config import AuditConfig
from carebench.auth.config import AuthConfig
from carebench.backends.base import Backend
from carebench.backends.config import BackendConfig, create_backend
from carebench.backends.simulator import SimulatorConfig
from carebench.faults.config import FaultConfig, inject_faults
from carebench.patterns.base import PatternConfig
from carebench.resilience.config import ResilienceConfig, wrap_backend
from carebench.server.config import ServerConfig
from carebench.server.exposure import check_exposure
from carebench.settings import as_flags, changed_flags


@dataclass(frozen=True, slots=True)
class ServerSetup:
    server: ServerConfig = field(default_factory=ServerConfig)
    patterns: PatternConfig = field(default_factory=PatternConfig)
    database: SimulatorConfig = field(default_factory=SimulatorConfig)
    resilience: ResilienceConfig = field(default_factory=ResilienceConfig)
    backend: BackendConfig = field(default_factory=BackendConfig)
    faults: FaultConfig = field(default_factory=FaultConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)

    def __post_init__(self) -> None:
        self.effective_database()  # an unset --min-latency above --max-latency fails here
        check_exposure(self.server, self.auth)

    def effective_database(self) -> SimulatorConfig:
        """The database settings with the backend's defaults for latency and errors filled in
        (the reference's 50-100 ms and 5 % on the simulator, none injected on a real one)."""
        return self.database.resolved(real=self.backend.real)

    def build_backend(self) -> Backend:
        """The backend chain a server runs: the configured backend, the --faults schedule
        injected into it, then retries and the circuit breaker around both (not started)."""
        database = self.effective_database()
        backend = create_backend(self.backend, database)
        return wrap_backend(inject_faults(backend, self.faults, database.seed), self.resilience)

    def _sections(self) -> tuple[object, ...]:
        return (
            self.server,
            self.patterns,
            self.database,
            self.resilience,
            self.backend,
            # Before the faults: a load test's forwarded flags end with the schedule.
            self.auth,
            self.audit,
            self.faults,
        )

    def as_flags(self) -> list[str]:
        """`carebench serve` arguments that recreate every forwarded setting."""
        return [flag for section in self._sections() for flag in as_flags(section)]

    def changed_flags(self) -> list[str]:
        """The flags set to something other than their default."""
        return [flag for section in self._sections() for flag in changed_flags(section)]
