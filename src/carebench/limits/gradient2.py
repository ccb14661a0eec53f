"""Gradient2 (Netflix concurrency-limits `Gradient2Limit`): compare a short-term RTT with a
long-term average, shrink the limit when the short one inflates, grow it by a queue
allowance when they agree.

One difference from the library, in the long-term average's horizon. The library's
`longWindow` (600) counts `onSample` calls, and its javadoc has the limit recalculated once
per sampling window ("ex. 1 second", `WindowedLimit`): 600 windows, minutes of traffic. The
adaptive pattern feeds every answered request, and 600 requests are a few seconds at ~100
answers a second: the "baseline" then follows the queueing the limit itself causes, and under
a sustained overload the limit saws between its floor and 3-4x the database's best
concurrency (0.83-0.85 of its peak throughput at 10x, the reliability suite's overload). So
here a sample weighs 1 / (requests in flight): by Little's law one round trip brings about
that many answers, and the average spans ~600 round trips, near the library's windows, at
any load and with no clock. Everything else is the library's, term by term (docs/tuning.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from carebench.limits.base import LimitStats


@dataclass(slots=True)
class Gradient2Limit:
    """Defaults from the library: initial 20, min 20, max 200, smoothing 0.2, RTT tolerance 1.5,
    long window 600 (round trips here, samples there), queue allowance 4."""

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

    def _update_long_rtt(self, rtt: float, in_flight: int) -> float:
        # Simple average during warm-up, then an exponential average over `long_window` round
        # trips: a sample taken with n in flight is 1/n of one (see the module docstring).
        self._samples += 1
        if self._samples <= 10:
            self._long_rtt += (rtt - self._long_rtt) / self._samples
        else:
            factor = 2.0 / (self.long_window + 1) / max(in_flight, 1)
            self._long_rtt = self._long_rtt * (1 - factor) + rtt * factor
        return self._long_rtt

    def on_sample(self, rtt: float, in_flight: int, dropped: bool) -> int:
        if not 0 < rtt < math.inf:  # no usable measurement (NaN would poison the state)
            return self.limit
        self._last_rtt = rtt
        long_rtt = self._update_long_rtt(rtt, in_flight)
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
