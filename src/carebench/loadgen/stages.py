"""`--stages`: a load shape, as a sequence of stages each holding one level for a while.

    10s@100/s,20s@400/s,10s@100/s     open loop: arrivals per second in each stage
    10s@20,20s@200,10s@20             closed loop: clients in each stage

A stage is `DURATION@LEVEL` (`10`, `10s` or `500ms`); stages are separated by commas and run
one after the other, so the run lasts their sum. All stages of one shape are of one loop: a
rate (`/s`) in each, or a client count in each. This replays a spike or a ramp against each
pattern: the timeline shows how the server follows the shape and recovers after it.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import math
import re
from dataclasses import dataclass

from carebench.settings import seconds

USAGE = (
    "--stages takes DURATION@LEVEL stages separated by commas: arrivals per second for an "
    "open loop (10s@100/s,20s@400/s,10s@100/s) or clients for a closed loop (10s@20,20s@200)"
)
_STAGE = re.compile(r"\s*(?P<duration>[^@]+)@\s*(?P<level>[0-9.]+)\s*(?P<rate>/s)?\s*")


class StagesError(ValueError):
    """The --stages text is invalid; the message quotes the stage and says what to write."""


@dataclass(frozen=True, slots=True)
class Stage:
    """Hold `level` (arrivals per second, or clients) for `seconds`."""

    seconds: float
    level: float


@dataclass(frozen=True, slots=True)
class LoadShape:
    """Stages run back to back from offset 0; `open` when the levels are arrival rates."""

    stages: tuple[Stage, ...]
    open: bool

    @property
    def duration(self) -> float:
        return sum(stage.seconds for stage in self.stages)

    @property
    def ends(self) -> tuple[float, ...]:
        """The offset at which each stage ends."""
        return tuple(itertools.accumulate(stage.seconds for stage in self.stages))

    @property
    def mean_level(self) -> float:
        """The level averaged over time (an open loop's mean arrival rate)."""
        return sum(stage.seconds * stage.level for stage in self.stages) / self.duration

    def first(self, seconds: float) -> LoadShape:
        """The first stage's level held for `seconds` (a warm-up for this shape)."""
        return LoadShape((Stage(seconds, self.stages[0].level),), self.open)

    @property
    def peak(self) -> float:
        return max(stage.level for stage in self.stages)

    def level_at(self, offset: float) -> float:
        """The level in force `offset` seconds in (the first stage's before 0, the last's after
        the end)."""
        index = min(bisect.bisect_right(self.ends, offset), len(self.stages) - 1)
        return self.stages[index].level

    def next_change(self, offset: float) -> float:
        """The offset of the next stage boundary after `offset` (inf after the last)."""
        ends = self.ends
        index = bisect.bisect_right(ends, offset)
        return ends[index] if index < len(ends) else math.inf

    def describe(self) -> str:
        unit = "/s" if self.open else ""
        return ",".join(f"{stage.seconds:g}s@{stage.level:g}{unit}" for stage in self.stages)


def parse_stages(text: str) -> LoadShape:
    """Read `--stages`; raises StagesError naming the stage at fault."""
    parts = [part for part in text.split(",") if part.strip()]
    if not parts:
        raise StagesError(f"{USAGE}; got {text!r}")
    stages: list[Stage] = []
    kinds: set[bool] = set()
    for part in parts:
        match = _STAGE.fullmatch(part)
        if match is None:
            raise StagesError(f"{USAGE}; cannot read stage {part.strip()!r}")
        try:
            duration = seconds(match["duration"])
            level = float(match["level"])
        except (argparse.ArgumentTypeError, ValueError):
            raise StagesError(f"{USAGE}; cannot read stage {part.strip()!r}") from None
        is_open = match["rate"] is not None
        _check_stage(part.strip(), duration, level, is_open)
        kinds.add(is_open)
        stages.append(Stage(duration, level))
    if len(kinds) > 1:
        raise StagesError(
            f"{USAGE}; stages mix rates (N/s) and client counts: use one loop for the whole shape"
        )
    return LoadShape(tuple(stages), kinds.pop())


def _check_stage(text: str, duration: float, level: float, is_open: bool) -> None:
    if not math.isfinite(duration) or duration <= 0:
        raise StagesError(f"stage {text!r}: its duration must be > 0 seconds")
    if not math.isfinite(level) or level <= 0:
        raise StagesError(f"stage {text!r}: its level must be > 0")
    if not is_open and level != int(level):
        raise StagesError(f"stage {text!r}: a closed-loop stage needs a whole number of clients")
