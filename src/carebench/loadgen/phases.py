"""The two phases of a load run on an Engine: a warm-up at the first level, then the measured
run. Shared by `loadtest`'s own generator (the whole run) and each `--generators` process (its
share: part of the budget, part of the rate, its place in the common schedule)."""

from __future__ import annotations

import math
import random

from carebench.loadgen.config import LoadConfig
from carebench.loadgen.engine import Engine, Schedule, Stepped
from carebench.loadgen.stages import LoadShape


def mean_rate(rate: float | None, shape: LoadShape | None) -> float:
    """The open loop's rate, or a shape's mean rate (which the report holds the achieved rate
    to)."""
    if rate is not None:
        return rate
    assert shape is not None
    return shape.mean_level


async def warm_up(
    engine: Engine,
    load: LoadConfig,
    begin: float,
    rate: float | None,
    shape: LoadShape | None,
    offset: float = 0.0,
) -> None:
    """--warmup seconds from `begin` at the first level: the rate or the clients, or the first
    stage's level."""
    until = begin + load.warmup
    first = shape.first(load.warmup) if shape else None
    if load.loop == "closed":
        await engine.closed_loop(math.inf, until, Stepped(first, begin) if first else None)
    else:
        await engine.open_loop(Schedule(begin + offset, mean_rate(rate, shape), until, shape=first))


async def run_measured(
    engine: Engine,
    load: LoadConfig,
    started: float,
    requests: float,
    rate: float | None,
    shape: LoadShape | None,
    seed: int | None,
    offset: float = 0.0,
) -> Schedule | None:
    """The measured run from `started`; the open loop's schedule (None for a closed loop)."""
    if load.loop == "closed":
        if load.duration is None:
            await engine.closed_loop(requests)
        else:
            stepped = Stepped(shape, started) if shape else None
            await engine.closed_loop(math.inf, started + load.duration, stepped)
        return None
    assert load.duration is not None
    schedule = Schedule(
        started + offset, mean_rate(rate, shape), started + load.duration,
        load.arrivals == "poisson", random.Random(seed), shape,
    )  # fmt: skip
    await engine.open_loop(schedule)
    return schedule
