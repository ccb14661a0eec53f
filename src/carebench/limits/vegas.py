"""Vegas (Netflix concurrency-limits `VegasLimit`, after TCP Vegas): estimate the queue at the
backend as limit x (1 - minRTT / RTT) and keep it between alpha and beta."""

from __future__ import annotations

import math
from dataclasses import dataclass

from carebench.limits.base import LimitStats


def _log10(limit: float) -> int:
    """The library's step function (`Log10RootIntFunction`): the whole part of log10(limit),
    at least 1, so alpha, beta and the steps are whole requests (3, 6 and 1 below 100)."""
    return max(1, int(math.log10(max(int(limit), 1))))


@dataclass(slots=True)
class VegasLimit:
    """Defaults from the library: initial 20, max 1000, smoothing 1.0; alpha = 3 log10(limit),
    beta = 6 log10(limit), threshold = log10(limit); increase/decrease by log10(limit), where
    log10 is the library's whole-number one (1 up to a limit of 99, 2 up to 999).
    Every `probe_multiplier` x limit samples the no-load RTT is forgotten and re-learned (the
    library's probe, without its jitter), so a stale minimum does not pin the limit low."""

    initial: int = 20
    max_limit: int = 1000
    smoothing: float = 1.0
    probe_multiplier: int = 30
    name: str = "vegas"
    _estimate: float = 0.0
    _rtt_noload: float = 0.0
    _last_rtt: float = 0.0
    _since_probe: int = 0
    _next_probe: float = 0.0

    def __post_init__(self) -> None:
        self._estimate = float(self.initial)
        self._next_probe = self.probe_multiplier * self._estimate

    @property
    def limit(self) -> int:
        return int(self._estimate)

    def on_sample(self, rtt: float, in_flight: int, dropped: bool) -> int:
        if not 0 < rtt < math.inf:  # no usable measurement (NaN would poison the state)
            return self.limit
        self._last_rtt = rtt
        self._since_probe += 1
        # Unlike the library (which compares against the current limit x a jitter of 0.5-1
        # on every sample), the countdown is fixed when set: re-reading a limit that is
        # falling fast would trigger a probe mid-collapse.
        if self._since_probe >= self._next_probe:
            self._since_probe, self._rtt_noload = 0, 0.0
            self._next_probe = self.probe_multiplier * self._estimate
        if self._rtt_noload == 0.0 or rtt < self._rtt_noload:
            self._rtt_noload = rtt
            return self.limit
        self._apply(self._target(rtt, in_flight, dropped))
        return self.limit

    def _target(self, rtt: float, in_flight: int, dropped: bool) -> float | None:
        limit = self._estimate
        step = _log10(limit)
        if dropped:
            return limit - step
        if in_flight * 2 < limit:
            return None  # app-limited: not enough traffic to judge
        queue = math.ceil(limit * (1 - self._rtt_noload / rtt))
        if queue <= step:
            return limit + 6 * step  # beta: far below capacity, grow quickly
        if queue < 3 * step:
            return limit + step  # below alpha
        if queue > 6 * step:
            return limit - step  # above beta
        return None

    def _apply(self, target: float | None) -> None:
        if target is None:
            return
        target = max(1.0, min(float(self.max_limit), target))
        self._estimate = (1 - self.smoothing) * self._estimate + self.smoothing * target

    def stats(self) -> LimitStats:
        return {
            "algorithm": self.name,
            "limit": self.limit,
            "min_rtt_ms": round(self._rtt_noload * 1000, 3),
            "sample_rtt_ms": round(self._last_rtt * 1000, 3),
        }
