"""The LimitAlgorithm protocol and its registry."""

from __future__ import annotations

from typing import NotRequired, Protocol, TypedDict

from carebench.registry import Registry


class LimitStats(TypedDict):
    """An algorithm's state; the round-trip times are those it tracks (None: not yet known)."""

    algorithm: str
    limit: int
    min_rtt_ms: NotRequired[float | None]
    sample_rtt_ms: NotRequired[float]
    long_rtt_ms: NotRequired[float]


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

    def stats(self) -> LimitStats: ...


LIMIT_ALGORITHMS = Registry(
    "--limit-algorithm",
    "limit algorithm",
    {
        "gradient2": "carebench.limits.gradient2:Gradient2Limit",
        "aimd": "carebench.limits.aimd:AimdLimit",
        "vegas": "carebench.limits.vegas:VegasLimit",
    },
)


def create_limit(name: str) -> LimitAlgorithm:
    """A new algorithm registered as `name`, with its defaults."""
    algorithm: LimitAlgorithm = LIMIT_ALGORITHMS.load(name)()
    return algorithm
