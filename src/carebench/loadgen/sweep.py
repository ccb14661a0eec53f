"""Sweeps: run every pattern at each level of offered load, to find peaks and knees."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Literal, TypedDict

from carebench.loadgen.machine import MachineDescription, describe_machine
from carebench.loadgen.results import LoadTestResult
from carebench.loadgen.runner import Progress, RunPlan, run_plan

AXES = ("concurrency", "rate")
SWEEP_SCHEMA_VERSION = 1


class SweepDocument(TypedDict):
    """What `carebench sweep --output` writes: every pattern's result at every level."""

    schema_version: int
    kind: Literal["sweep"]
    #: concurrency (closed-loop clients) or rate (open-loop arrivals per second).
    axis: str
    levels: list[float]
    duration_seconds: float
    interrupted: bool
    machine: MachineDescription
    #: One per pattern per level, each with its `level`.
    results: list[LoadTestResult]


def level_plan(plan: RunPlan, axis: str, level: float, duration: float) -> RunPlan:
    """`plan` at one level: `level` closed-loop clients, or `level` arrivals per second."""
    load = plan.load
    if axis == "concurrency":
        load = dataclasses.replace(load, concurrency=int(level), duration=duration, rate=None)
    else:
        load = dataclasses.replace(load, rate=float(level), duration=duration)
    return dataclasses.replace(plan, load=load)


def run_sweep(
    plan: RunPlan,
    axis: str,
    levels: Sequence[float],
    duration: float,
    progress: Progress | None = None,
) -> SweepDocument:
    """A sweep document: one result per pattern per level, each tagged with its level."""
    results: list[LoadTestResult] = []
    interrupted = False
    for level in levels:
        try:
            level_results = run_plan(level_plan(plan, axis, level, duration), progress)
        except KeyboardInterrupt:  # before this level's first run finished: keep the others
            if not results:
                raise
            interrupted = True
            break
        for result in level_results:
            result["level"] = level
            results.append(result)
            interrupted = interrupted or result["interrupted"]
        if interrupted:
            break
    return {
        "schema_version": SWEEP_SCHEMA_VERSION,
        "kind": "sweep",
        "axis": axis,
        "levels": list(levels),
        "duration_seconds": duration,
        "interrupted": interrupted,
        "machine": describe_machine(),
        "results": results,
    }
