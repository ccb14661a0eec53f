"""An in-flight limit tuned from latency, after Uber's Cinnamon auto-tuner (a TCP-Vegas relative).

Completed requests' service times are gathered into windows. Each window's p90, smoothed,
is compared with the best (lowest) window p90 of the recent past, the latency the backend
gives when it is not congested. While the smoothed p90 stays within a tolerance of it and
the limit is actually in use, the limit grows; when it inflates past the tolerance, the limit
shrinks in proportion (at most halving per window). As in Cinnamon, the tolerance is wider
at low limits, where one more request in flight changes latency more, and the baseline is a
minimum over a sliding history, so a backend that became slower for good is re-learned
instead of pinning the limit at its floor.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from carebench.limits.pid import clamp


def percentile(samples: Sequence[float], fraction: float) -> float:
    """The `fraction` quantile of `samples` (nearest rank); 0.0 for none."""
    if not samples:
        return 0.0
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1)]


@dataclass(slots=True)
class LatencyTuner:
    """Defaults: windows of at least 50 samples, p90 smoothed with weight 0.3, a baseline
    over the last 60 windows, tolerance 0.2 + 2/sqrt(limit) (1.1 at 5, 0.65 at 20, 0.4 at
    100), growth by 5 % of the limit (at least 1) per window."""

    initial: int = 20
    min_limit: int = 2
    max_limit: int = 200
    min_samples: int = 50
    smoothing: float = 0.3
    history: int = 60
    _limit: float = 0.0
    _samples: list[float] = field(default_factory=list)
    _smoothed: float = 0.0
    _baselines: deque[float] = field(default_factory=deque)
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
        return 0.2 + 2.0 / math.sqrt(self._limit)

    def record(self, latency: float) -> None:
        """One completed request's service time (seconds)."""
        if 0.0 <= latency < math.inf:
            self._samples.append(latency)

    def update(self, saturated: bool) -> int:
        """Close a window if it has enough samples; `saturated`: the limit was reached in it
        (a request found no free slot), without which growing it would prove nothing."""
        if len(self._samples) < self.min_samples:
            return self.limit
        self.last_p90 = p90 = percentile(self._samples, 0.9)
        self._samples.clear()
        self._smoothed = (
            p90
            if not self._baselines
            else (self._smoothed + self.smoothing * (p90 - self._smoothed))
        )
        self._baselines.append(p90)
        allowed = self.baseline * (1.0 + self.tolerance())
        if self._smoothed > allowed > 0:
            self._limit *= max(0.5, allowed / self._smoothed)
        elif saturated:
            self._limit += max(1.0, 0.05 * self._limit)
        self._limit = clamp(self._limit, self.min_limit, self.max_limit)
        return self.limit
