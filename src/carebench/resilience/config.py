"""Settings of the resilience wrappers, and building the backend chain from them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from carebench.backends.base import Backend
from carebench.errors import ConfigError
from carebench.loop_clock import LoopClock
from carebench.resilience.breaker import BreakerBackend, CircuitBreaker
from carebench.resilience.retry import RetryingBackend
from carebench.settings import INT, SECONDS, SWITCH, setting


@dataclass(frozen=True, slots=True)
class ResilienceConfig:
    """Retries and a circuit breaker around the backend; they combine with any pattern."""

    retries: int = setting(0, "--retries", "retry transient database errors up to N times", INT)
    circuit_breaker: bool = setting(
        False, "--circuit-breaker", "fail fast while the database keeps failing", SWITCH
    )
    breaker_threshold: int = setting(
        5, "--breaker-threshold", "consecutive failures that open the circuit", INT
    )
    breaker_reset: float = setting(
        5.0, "--breaker-reset", "how long the circuit stays open before a probe", SECONDS
    )

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ConfigError(f"--retries ({self.retries}) must be >= 0")
        if self.breaker_threshold < 1:
            raise ConfigError(f"--breaker-threshold ({self.breaker_threshold}) must be >= 1")
        if self.breaker_reset <= 0:
            raise ConfigError(f"--breaker-reset ({self.breaker_reset:g}) must be > 0 seconds")


def wrap_backend(
    backend: Backend,
    config: ResilienceConfig,
    loop_clock: LoopClock | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> Backend:
    """retries(breaker(backend)): an open circuit fails fast and is not retried."""
    if config.circuit_breaker:
        breaker = CircuitBreaker(config.breaker_threshold, config.breaker_reset, loop_clock)
        backend = BreakerBackend(backend, breaker, loop_clock)
    if config.retries:
        backend = RetryingBackend(backend, config.retries, loop_clock, sleep)
    return backend
