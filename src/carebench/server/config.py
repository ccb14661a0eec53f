"""Settings of the HTTP server itself (pattern and backend settings live with them)."""

from __future__ import annotations

from dataclasses import dataclass

from carebench.errors import ConfigError
from carebench.registry import check_choice

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
SERVERS = ("uvicorn", "granian")


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Where to listen and how long a request and the shutdown drain may take (seconds)."""

    host: str = "127.0.0.1"
    port: int = 8080
    request_timeout: float = 5.0
    critical_timeout: float = 2.0
    batch_timeout: float = 30.0
    drain_timeout: float = 10.0
    log_level: str = "warning"
    quiet: bool = False
    enable_profiling: bool = False
    server: str = "uvicorn"

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port ({self.port}) must be between 0 and 65535 (0 = any free)")
        for flag, value in (
            ("--request-timeout", self.request_timeout),
            ("--critical-timeout", self.critical_timeout),
            ("--batch-timeout", self.batch_timeout),
        ):
            if value <= 0:
                raise ConfigError(f"{flag} ({value:g}) must be > 0")
        if self.drain_timeout < 0:
            raise ConfigError(f"--drain-timeout ({self.drain_timeout:g}) must be >= 0")
        check_choice("--server", "server", self.server, SERVERS)
        check_choice("--log-level", "log level", self.log_level, LOG_LEVELS)

    @property
    def class_timeouts(self) -> dict[str, float]:
        """Deadline per X-Request-Priority class."""
        return {
            "critical": self.critical_timeout,
            "standard": self.request_timeout,
            "batch": self.batch_timeout,
        }
