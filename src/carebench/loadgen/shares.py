"""How `loadtest --generators N` divides one load between N generator processes.

Every whole quantity is split exactly: a request budget, the connections and a closed-loop
shape's clients in each stage go out in whole shares that add up to the total (the first
`total % N` generators take one more). An open-loop rate is split evenly, each generator
following its own schedule at rate/N so that every latency is still measured from that
request's intended send time (coordinated omission stays corrected when the histograms are
added). With constant arrivals generator k's schedule starts k/rate later than the first,
so the generators' slots interleave into the single schedule at `rate`; with Poisson
arrivals each draws from its own seeded stream, and N independent Poisson processes at
rate/N add up to one at `rate`.
"""

from __future__ import annotations

from dataclasses import dataclass

from carebench.loadgen.config import LoadConfig
from carebench.loadgen.stages import LoadShape, Stage


def split_whole(total: int, parts: int) -> list[int]:
    """`total` in `parts` whole shares that differ by at most one and sum to `total`."""
    if parts < 1:
        raise ValueError(f"cannot split into {parts} parts")
    base, extra = divmod(total, parts)
    return [base + (1 if index < extra else 0) for index in range(parts)]


@dataclass(frozen=True, slots=True)
class GeneratorShare:
    """One generator's part of the load; the settings it does not name are the run's own."""

    index: int
    #: How many generators share the load.
    count: int
    #: Closed loop with a budget: this generator's requests (0 when the run is timed).
    requests: int
    connections: int
    #: Open loop: this generator's arrivals per second (None for a closed loop).
    rate: float | None
    #: Seconds after the common start at which this generator's schedule begins.
    offset: float
    #: --stages with this generator's levels (rates / N, or its share of each stage's clients).
    shape: LoadShape | None
    #: The run's --seed plus the index, so generators draw different ids and arrivals.
    seed: int | None


def split_load(load: LoadConfig, count: int) -> list[GeneratorShare]:
    """The shares of `count` generators; together they apply exactly `load`."""
    timed = load.duration is not None
    budgets = [0] * count if timed else split_whole(load.requests, count)
    shape = load.shape
    open_loop = load.loop == "open"
    first_rate = _first_rate(load)
    shares = []
    for index in range(count):
        own_shape = _shape_share(shape, index, count) if shape else None
        if own_shape is not None and not own_shape.open:
            connections = int(own_shape.peak)
        else:
            connections = split_whole(load.connections, count)[index]
        constant = open_loop and load.arrivals == "constant"
        shares.append(
            GeneratorShare(
                index=index,
                count=count,
                requests=budgets[index],
                connections=connections,
                rate=load.rate / count if load.rate is not None else None,
                offset=index / first_rate if constant and first_rate else 0.0,
                shape=own_shape,
                seed=None if load.seed is None else load.seed + index,
            )
        )
    return shares


def _first_rate(load: LoadConfig) -> float | None:
    """The open loop's rate at the start (the first stage's with --stages)."""
    if load.rate is not None:
        return load.rate
    shape = load.shape
    return shape.stages[0].level if shape is not None and shape.open else None


def _shape_share(shape: LoadShape, index: int, count: int) -> LoadShape:
    """Generator `index`'s stages: each rate / count, or its whole share of each stage's
    clients (possibly 0 in a stage with fewer clients than generators)."""
    if shape.open:
        stages = tuple(Stage(stage.seconds, stage.level / count) for stage in shape.stages)
    else:
        stages = tuple(
            Stage(stage.seconds, float(split_whole(int(stage.level), count)[index]))
            for stage in shape.stages
        )
    return LoadShape(stages, shape.open)
