"""The `--faults` setting, and putting its schedule around a backend."""

from __future__ import annotations

import random
from dataclasses import dataclass

from carebench.backends.base import Backend
from carebench.errors import ConfigError
from carebench.faults.backend import FaultyBackend
from carebench.faults.schedule import EXAMPLE, FaultSchedule, FaultScheduleError, parse_schedule
from carebench.loop_clock import LoopClock
from carebench.settings import Kind, setting


def _schedule_text(text: str) -> str | None:
    """The flag's text as given (checked by FaultConfig); blank means no faults."""
    return text.strip() or None


SCHEDULE = Kind("schedule", _schedule_text, metavar="SCHEDULE")


@dataclass(frozen=True, slots=True)
class FaultConfig:
    """Faults injected into the backend on a schedule (any backend, real or simulated)."""

    faults: str | None = setting(
        None,
        "--faults",
        "backend faults on a schedule, timed from when the server starts serving: "
        f"'{EXAMPLE}' (outage: queries fail as if the database were unreachable; slow xN: "
        "they take N times as long; errors P%: that share fails; no 'for': until the end)",
        SCHEDULE,
    )

    def __post_init__(self) -> None:
        self.schedule  # noqa: B018 (parsed for its errors)

    @property
    def schedule(self) -> FaultSchedule | None:
        """The parsed schedule; None without --faults."""
        if self.faults is None:
            return None
        try:
            return parse_schedule(self.faults)
        except FaultScheduleError as bad:
            raise ConfigError(f"--faults: {bad}") from None


def inject_faults(
    backend: Backend,
    config: FaultConfig,
    seed: int | None = None,
    loop_clock: LoopClock | None = None,
) -> Backend:
    """`backend` with the configured faults applied (itself when there are none); `seed`
    makes the errors P% draws reproducible."""
    schedule = config.schedule
    if not schedule:
        return backend
    return FaultyBackend(backend, schedule, loop_clock, rng=random.Random(seed))
