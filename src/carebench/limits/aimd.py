"""Additive increase, multiplicative decrease (Netflix concurrency-limits `AIMDLimit`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from carebench.limits.base import LimitStats


@dataclass(slots=True)
class AimdLimit:
    """+1 when at least half the limit is in use and all is well; x`backoff` on a drop or
    when a request took longer than `timeout` seconds."""

    initial: int = 20
    min_limit: int = 20
    max_limit: int = 200
    backoff: float = 0.9
    timeout: float = 5.0
    name: str = "aimd"
    _limit: int = 0

    def __post_init__(self) -> None:
        self._limit = self.initial

    @property
    def limit(self) -> int:
        return self._limit

    def on_sample(self, rtt: float, in_flight: int, dropped: bool) -> int:
        if dropped or rtt > self.timeout:
            self._limit = max(self.min_limit, math.floor(self._limit * self.backoff))
        elif in_flight * 2 >= self._limit:
            self._limit = min(self.max_limit, self._limit + 1)
        return self._limit

    def stats(self) -> LimitStats:
        return {"algorithm": self.name, "limit": self._limit}
