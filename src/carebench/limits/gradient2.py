"""Gradient2 (Netflix concurrency-limits `Gradient2Limit`): compare a short-term RTT with a
long-term average, shrink the limit when the short one inflates, grow it by a queue
allowance when they agree."""

from __future__ import annotations

import math
from dataclasses import dataclass

from carebench.limits.base import LimitStats


@dataclass(slots=True)
class Gradient2Limit:
    """Defaults from the library: initial 20, min 20, max 200, smoothing 0.2, RTT tolerance 1.5,
    long window 600 samples, queue allowance 4."""

    initial: int = 20
    min_limit: int = 20
    max_limit: int = 200
    smoothing: float = 0.2
    rtt_tolerance: float = 1.5
    long_window: int = 600
    queue_size: int = 4
    name: str = "gradient2"
    _estimate: float = 0.0
    _long_rtt: float = 0.0
    _samples: int = 0
    _last_rtt: float = 0.0

    def __post_init__(self) -> None:
        self._estimate = float(self.initial)

    @property
    def limit(self) -> int:
        return int(self._estimate)

    def _update_long_rtt(self, rtt: float) -> float:
        # Simple average during warm-up, then an exponential average over `long_window`.
        self._samples += 1
        if self._samples <= 10:
            self._long_rtt += (rtt - self._long_rtt) / self._samples
        else:
            factor = 2.0 / (self.long_window + 1)
            self._long_rtt = self._long_rtt * (1 - factor) + rtt * factor
        return self._long_rtt

    def on_sample(self, rtt: float, in_flight: int, dropped: bool) -> int:
        if not 0 < rtt < math.inf:  # no usable measurement (NaN would poison the state)
            return self.limit
        self._last_rtt = rtt
        long_rtt = self._update_long_rtt(rtt)
        # After a long overload the average lags; let it recover faster towards the present.
        if long_rtt / rtt > 2.0:
            self._long_rtt = long_rtt = long_rtt * 0.95
        # App-limited: too little traffic to learn anything about the limit.
        if in_flight < self._estimate / 2:
            return self.limit
        gradient = max(0.5, min(1.0, self.rtt_tolerance * long_rtt / rtt))
        new_limit = self._estimate * gradient + self.queue_size
        new_limit = self._estimate * (1 - self.smoothing) + new_limit * self.smoothing
        self._estimate = max(float(self.min_limit), min(float(self.max_limit), new_limit))
        return self.limit

    def stats(self) -> LimitStats:
        return {
            "algorithm": self.name,
            "limit": self.limit,
            "long_rtt_ms": round(self._long_rtt * 1000, 3),
            "sample_rtt_ms": round(self._last_rtt * 1000, 3),
            "min_rtt_ms": None,
        }
