"""Settings of the HTTP server itself (pattern and backend settings live with them)."""

from __future__ import annotations

from dataclasses import dataclass

from carebench.errors import ConfigError
from carebench.models import DEFAULT_CLASS_TIMEOUTS
from carebench.registry import check_choice
from carebench.server.servers import SERVERS
from carebench.server.tls import check_tls_settings
from carebench.settings import INT, SECONDS, SWITCH, setting

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
#: The smallest --max-header-size: granian (hyper) refuses a read buffer under 8 KiB, and a
#: request line plus the usual headers can take a few KiB.
MIN_HEADER_SIZE = 8192


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Where to listen and how long a request and the shutdown drain may take (seconds)."""

    host: str = setting("127.0.0.1", "--host", "interface to listen on", forwarded=False)
    port: int = setting(8080, "--port", "port; 0 = any free port", INT, forwarded=False)
    request_timeout: float = setting(
        DEFAULT_CLASS_TIMEOUTS["standard"],
        "--request-timeout",
        "deadline of standard requests",
        SECONDS,
    )
    critical_timeout: float = setting(
        DEFAULT_CLASS_TIMEOUTS["critical"],
        "--critical-timeout",
        "deadline of X-Request-Priority: critical requests",
        SECONDS,
    )
    batch_timeout: float = setting(
        DEFAULT_CLASS_TIMEOUTS["batch"],
        "--batch-timeout",
        "deadline of X-Request-Priority: batch requests",
        SECONDS,
    )
    drain_timeout: float = setting(
        10.0,
        "--drain-timeout",
        "how long shutdown waits for accepted requests",
        SECONDS,
        forwarded=False,
    )
    log_level: str = setting(
        "warning", "--log-level", "server log level", choices=LOG_LEVELS, forwarded=False
    )
    quiet: bool = setting(False, "--quiet", "no start-up banner", SWITCH, forwarded=False)
    enable_profiling: bool = setting(
        False,
        "--enable-profiling",
        "serve GET /debug/profile?seconds=N (loopback clients only)",
        SWITCH,
        forwarded=False,
    )
    read_timeout: float = setting(
        10.0,
        "--read-timeout",
        "how long a client may take to send a request once it has begun, and its first one "
        "after connecting (408 and close after)",
        SECONDS,
        forwarded=False,
    )
    max_header_size: int = setting(
        16384,
        "--max-header-size",
        "largest request line and headers (414 or 431 and close beyond)",
        INT,
        forwarded=False,
        metavar="BYTES",
    )
    server: str = setting(
        "uvicorn",
        "--server",
        "HTTP server (granian needs the granian extra)",
        choices=lambda: tuple(SERVERS),
    )
    processes: int = setting(
        1,
        "--processes",
        "server processes sharing the port, each with its own pattern and backend: limits "
        "are per process, so total capacity is N x each limit",
        INT,
    )
    tls_cert: str | None = setting(
        None,
        "--tls-cert",
        "serve HTTPS (TLS 1.2+) with this PEM certificate chain; needs --tls-key",
        metavar="FILE",
    )
    tls_key: str | None = setting(
        None, "--tls-key", "the PEM private key of --tls-cert (unencrypted)", metavar="FILE"
    )
    tls_client_ca: str | None = setting(
        None,
        "--tls-client-ca",
        "mutual TLS: require a client certificate issued by a CA in this PEM file",
        metavar="FILE",
    )

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
        if self.read_timeout <= 0:
            raise ConfigError(f"--read-timeout ({self.read_timeout:g}) must be > 0")
        if self.max_header_size < MIN_HEADER_SIZE:
            raise ConfigError(
                f"--max-header-size ({self.max_header_size}) must be >= {MIN_HEADER_SIZE}"
            )
        if self.processes < 1:
            raise ConfigError(f"--processes ({self.processes}) must be >= 1")
        if self.drain_timeout < 0:
            raise ConfigError(f"--drain-timeout ({self.drain_timeout:g}) must be >= 0")
        SERVERS.check(self.server)
        check_choice("--log-level", "log level", self.log_level, LOG_LEVELS)
        check_tls_settings(self.tls_cert, self.tls_key, self.tls_client_ca)

    @property
    def tls(self) -> bool:
        """Whether the server speaks HTTPS."""
        return self.tls_cert is not None

    @property
    def class_timeouts(self) -> dict[str, float]:
        """Deadline per X-Request-Priority class."""
        return {
            "critical": self.critical_timeout,
            "standard": self.request_timeout,
            "batch": self.batch_timeout,
        }
