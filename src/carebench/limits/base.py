"""The LimitAlgorithm protocol and its registry."""

from __future__ import annotations

import importlib
from typing import Any, Protocol

from carebench.errors import ConfigError


class LimitAlgorithm(Protocol):
    """Adjusts a concurrency limit from completed requests."""

    name: str

    @property
    def limit(self) -> int:
        """The current concurrency limit (requests allowed in flight)."""
        ...

    def on_sample(self, rtt: float, in_flight: int, dropped: bool) -> int:
        """Feed one completed request: its round-trip time in seconds, how many requests were
        in flight when it started, and whether it was dropped (error or timeout). Returns the
        new limit."""
        ...

    def stats(self) -> dict[str, Any]: ...


LIMIT_ALGORITHMS: dict[str, str] = {
    "aimd": "carebench.limits.aimd:AimdLimit",
    "gradient2": "carebench.limits.gradient2:Gradient2Limit",
    "vegas": "carebench.limits.vegas:VegasLimit",
}


def create_limit(name: str) -> LimitAlgorithm:
    """A new algorithm registered as `name`, with its defaults."""
    try:
        target = LIMIT_ALGORITHMS[name]
    except KeyError:
        valid = ", ".join(LIMIT_ALGORITHMS)
        raise ConfigError(f"--limit-algorithm: unknown {name!r} (valid: {valid})") from None
    module_name, _, class_name = target.partition(":")
    algorithm: LimitAlgorithm = getattr(importlib.import_module(module_name), class_name)()
    return algorithm
