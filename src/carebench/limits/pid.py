"""A discrete PI(D) controller with a clamped output and no integral windup.

Used by the shedder pattern (Uber's Cinnamon sets its rejection threshold with one): the
error is how far the measured queueing delay is from its target, the output how hard to shed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def clamp(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))


@dataclass(slots=True)
class PidController:
    """`output = kp*e + ki*integral(e dt) + kd*de/dt`, clamped to [low, high].

    The integral is kept in output units and clamped to the same range, so after a long
    saturation (an overload that lasted minutes) it holds no more than the range and the
    output starts moving back as soon as the error changes sign: no windup.
    """

    kp: float
    ki: float
    kd: float = 0.0
    low: float = 0.0
    high: float = 1.0
    output: float = 0.0
    integral: float = 0.0
    _last_error: float | None = None

    def __post_init__(self) -> None:
        if not self.low <= self.high:
            raise ValueError(f"low ({self.low:g}) must be <= high ({self.high:g})")
        self.integral = clamp(self.integral, self.low, self.high)
        self.output = clamp(self.output, self.low, self.high)

    def update(self, error: float, dt: float) -> float:
        """Feed the error measured over the last `dt` seconds; returns the new output."""
        if not (dt > 0 and math.isfinite(error) and math.isfinite(dt)):
            return self.output
        self.integral = clamp(self.integral + self.ki * error * dt, self.low, self.high)
        derivative = 0.0
        if self.kd and self._last_error is not None:
            derivative = self.kd * (error - self._last_error) / dt
        self._last_error = error
        self.output = clamp(self.kp * error + self.integral + derivative, self.low, self.high)
        return self.output
