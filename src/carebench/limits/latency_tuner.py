"""An in-flight limit tuned from latency, after Uber's Cinnamon auto-tuner (a TCP-Vegas relative).

Completed requests' service times are gathered into windows. Each window's p90, smoothed,
is compared with the best (lowest) window p90 of the recent past, the latency the backend
gives when it is not congested. While the smoothed p90 stays within a tolerance of it and
the limit is actually in use, the limit grows; when it inflates past the tolerance, the limit
shrinks in proportion (by at most 10 % per window). As in Cinnamon, the tolerance is wider
at low limits, where one more request in flight changes latency more.

The baseline is the minimum over a long history (300 windows): one that followed the recent
windows would creep up with the limit (Cinnamon's "ever drifting targetLatency": each reset
captured at a higher limit allows a higher one). A backend that became slower for good is
re-learned instead: when even the floor keeps latency over the tolerance for 20 windows, the
history restarts from the present.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from carebench.limits.pid import clamp

#: The most a window may take off the limit: the smoothed p90 lags, so a steeper cut would
#: keep cutting for windows after the latency has come back.
MAX_SHRINK = 0.1


def percentile(samples: Sequence[float], fraction: float) -> float:
    """The `fraction` quantile of `samples` (nearest rank); 0.0 for none."""
    if not samples:
        return 0.0
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1)]


@dataclass(slots=True)
class LatencyTuner:
    """Defaults: windows of 50 samples (or 10 updates with at least 10), p90 smoothed with
    weight 0.3, a baseline over the last 300 windows, tolerance 0.05 + 0.5/sqrt(limit) (0.27
    at 5, 0.16 at 20, 0.1 at 100), growth by 5 % of the limit (at least 1) per window."""

    initial: int = 20
    min_limit: int = 2
    max_limit: int = 200
    min_samples: int = 50
    #: Updates after which a window closes with only min_samples / 5 samples (slow traffic).
    max_updates: int = 10
    smoothing: float = 0.3
    history: int = 300
    #: Windows at the floor, still over the tolerance, after which the baseline is re-learned.
    relearn_after: int = 20
    _limit: float = 0.0
    _samples: list[float] = field(default_factory=list)
    _smoothed: float = 0.0
    _baselines: deque[float] = field(default_factory=deque)
    _updates: int = 0
    _saturated: bool = False
    _at_floor: int = 0
    last_p90: float = 0.0

    def __post_init__(self) -> None:
        if not 1 <= self.min_limit <= self.max_limit:
            raise ValueError(f"need 1 <= min ({self.min_limit}) <= max ({self.max_limit})")
        self._limit = clamp(float(self.initial), self.min_limit, self.max_limit)
        self._baselines = deque(maxlen=self.history)

    @property
    def limit(self) -> int:
        return int(self._limit)

    @property
    def baseline(self) -> float:
        """The lowest window p90 in the history (0.0 before the first window)."""
        return min(self._baselines, default=0.0)

    @property
    def smoothed(self) -> float:
        return self._smoothed

    def tolerance(self) -> float:
        """How much the p90 may exceed the baseline before the limit shrinks."""
        return 0.05 + 0.5 / math.sqrt(self._limit)

    def record(self, latency: float) -> None:
        """One completed request's service time (seconds)."""
        if 0.0 <= latency < math.inf:
            self._samples.append(latency)

    def update(self, saturated: bool) -> int:
        """Called every control interval; closes the window once it has enough samples.
        `saturated`: the limit was reached during the interval (a request found no free
        slot); growing a limit that was not reached would prove nothing."""
        self._updates += 1
        self._saturated |= saturated
        count = len(self._samples)
        if count < self.min_samples and (
            self._updates < self.max_updates or count < self.min_samples // 5
        ):
            return self.limit
        self.last_p90 = p90 = percentile(self._samples, 0.9)
        self._samples.clear()
        saturated, self._saturated, self._updates = self._saturated, False, 0
        first = not self._baselines
        self._smoothed = p90 if first else self._smoothed + self.smoothing * (p90 - self._smoothed)
        self._baselines.append(p90)
        allowed = self.baseline * (1.0 + self.tolerance())
        if self._smoothed > allowed > 0:
            self._shrink(allowed)
        else:
            self._at_floor = 0
            if saturated:
                self._limit += max(1.0, 0.05 * self._limit)
        self._limit = clamp(self._limit, self.min_limit, self.max_limit)
        return self.limit

    def _shrink(self, allowed: float) -> None:
        self._limit = max(
            float(self.min_limit), self._limit * max(1.0 - MAX_SHRINK, allowed / self._smoothed)
        )
        if self._limit > self.min_limit:
            return
        self._at_floor += 1
        if self._at_floor >= self.relearn_after:
            self._at_floor = 0
            self._baselines.clear()
            self._baselines.append(self._smoothed)
