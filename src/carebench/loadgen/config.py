"""Settings of one load test: loop model, volume, timing and which patient ids to ask for."""

from __future__ import annotations

from dataclasses import dataclass

from carebench.errors import ConfigError
from carebench.loadgen.ids import parse_ids
from carebench.loadgen.priorities import parse_priorities

LOOPS = ("closed", "open")
ARRIVALS = ("constant", "poisson")
MODES = ("http", "inprocess")


@dataclass(frozen=True, slots=True)
class LoadConfig:
    """What to send and how.

    Closed loop: `concurrency` clients send `requests` in total, or for `duration` seconds
    when a duration is given. Open loop (`rate` set): `rate` arrivals per second for
    `duration` seconds over at most `concurrency` connections.
    """

    requests: int = 1000
    concurrency: int = 100
    rate: float | None = None
    duration: float | None = None
    arrivals: str = "constant"
    timeout: float = 5.0
    warmup: float = 0.0
    ids: str = "fixed:P12345"
    priorities: str | None = None
    honor_retry_after: bool = False
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.requests < 1:
            raise ConfigError(f"--requests ({self.requests}) must be >= 1")
        if self.concurrency < 1:
            raise ConfigError(f"--concurrency ({self.concurrency}) must be >= 1")
        if self.rate is not None and self.duration is None:
            raise ConfigError("--rate needs --duration (open loop: how long to send for)")
        if self.rate is not None and self.rate <= 0:
            raise ConfigError(f"--rate ({self.rate:g}) must be > 0 requests per second")
        if self.duration is not None and self.duration <= 0:
            raise ConfigError(f"--duration ({self.duration:g}) must be > 0 seconds")
        if self.arrivals not in ARRIVALS:
            raise ConfigError(
                f"--arrivals: unknown {self.arrivals!r} (valid: {', '.join(ARRIVALS)})"
            )
        if self.timeout <= 0:
            raise ConfigError(f"--timeout ({self.timeout:g}) must be > 0 seconds")
        if self.warmup < 0:
            raise ConfigError(f"--warmup ({self.warmup:g}) must be >= 0 seconds")
        parse_ids(self.ids)
        parse_priorities(self.priorities)

    @property
    def loop(self) -> str:
        return "open" if self.rate is not None else "closed"
