"""A finished run as a LoadTestResult: one shape whether one engine or N generator processes
measured it (their recorders merged into one)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from carebench import __version__
from carebench.faults.timeline import FaultWindowReport
from carebench.loadgen.config import LoadConfig
from carebench.loadgen.results import (
    SCHEMA_VERSION,
    LoadTestResult,
    OpenLoopReport,
    RunConfigReport,
    RunRecorder,
)
from carebench.loadgen.sampler import ServerSample

#: The schedule counts as kept when at least this fraction of the target rate was sent.
SCHEDULE_TOLERANCE = 0.97


@dataclass(frozen=True, slots=True)
class ScheduleTally:
    """How an open loop's schedule went: planned (rate, window) and what was sent."""

    rate: float
    poisson: bool
    start: float
    end: float
    #: Slots the schedule(s) issued, requests sent, and the last send time.
    issued: int
    sent: int
    last_send: float


@dataclass(frozen=True, slots=True)
class Measured:
    """What a run measured, before it is described."""

    recorder: RunRecorder
    duration: float
    schedule: ScheduleTally | None
    samples: list[ServerSample]
    interrupted: bool
    faults: list[FaultWindowReport] | None = None


def describe_run(
    label: str,
    mode: str,
    load: LoadConfig,
    server_args: Sequence[str],
    measured: Measured,
    target: str | None,
) -> LoadTestResult:
    """The result document of one pattern's (or one target's) run."""
    # RunSummary has exactly the keys RunRecorder.summary writes, none of LoadTestResult's
    # optional ones; mypy cannot know that of a TypedDict, which may hold more keys.
    result: LoadTestResult = {
        "schema_version": SCHEMA_VERSION,
        "carebench_version": __version__,
        "pattern": label,
        "mode": mode,
        "loop": load.loop,
        "target": target,
        **measured.recorder.summary(measured.duration),  # type: ignore[typeddict-item]
        "open_loop": (
            open_loop_report(measured.recorder, measured.schedule) if measured.schedule else None
        ),
        "server_samples": measured.samples,
        "interrupted": measured.interrupted,
        "config": config_report(load, server_args),
        "server_metrics": None,
    }
    if measured.faults:
        result["faults"] = measured.faults
    return result


def open_loop_report(recorder: RunRecorder, schedule: ScheduleTally) -> OpenLoopReport:
    """Whether the arrival schedule was kept: the send rate achieved and the worst lag."""
    planned = schedule.rate
    window = max(schedule.end - schedule.start, schedule.last_send - schedule.start)
    achieved = schedule.sent / window if window > 0 else 0.0
    return {
        "target_rate": planned,
        "arrivals": "poisson" if schedule.poisson else "constant",
        "scheduled_requests": schedule.issued,
        "achieved_rate": round(achieved, 2),
        "max_lag_ms": round(recorder.max_lag * 1000, 3),
        "schedule_kept": achieved >= SCHEDULE_TOLERANCE * planned,
        "corrected": "latency_ms is measured from each request's intended send time",
        "uncorrected_latency_ms": recorder.uncorrected.summary_ms(),
        "uncorrected_rejection_latency_ms": recorder.uncorrected_rejections.summary_ms(),
    }


def config_report(load: LoadConfig, server_args: Sequence[str]) -> RunConfigReport:
    report: RunConfigReport = {
        "requests": load.requests if load.duration is None else None,
        "concurrency": load.concurrency,
        "rate": load.rate,
        "duration": load.duration,
        "stages": load.shape.describe() if load.shape else None,
        "arrivals": load.arrivals if load.loop == "open" else None,
        "timeout": load.timeout,
        "warmup": load.warmup,
        "ids": load.ids,
        "priorities": load.priorities,
        "honor_retry_after": load.honor_retry_after,
        "seed": load.seed,
        "server_args": list(server_args),
    }
    if load.generators > 1:
        report["generators"] = load.generators
    return report
