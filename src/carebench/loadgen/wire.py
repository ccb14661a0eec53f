"""The private messages between `loadtest --generators N` and its generator processes.

msgpack (msgspec) over each generator's multiprocessing pipe. The parent sends `Begin` (the
common start time, on the monotonic clock every process of the machine shares) and, when
interrupted, `Stop`; a generator answers `Ready` once its connections are set up, `Progress`
a few times a second (the parent's heartbeat and progress bar), and finally `Finished` with
its exact recorder state (histogram slots and sums, counts, timeline) or `Failed`.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping

import msgspec

from carebench.loadgen.results import OUTCOMES, ClassStats, Interval, Outcome, RunRecorder
from carebench.metrics.latency import LatencyRecorder, LatencyState


class IntervalState(msgspec.Struct, frozen=True):
    start: float
    counts: dict[str, int]
    latency: LatencyState


class ClassState(msgspec.Struct, frozen=True):
    counts: dict[str, int]
    success_latency: LatencyState


class RecorderState(msgspec.Struct, frozen=True):
    """Everything a RunRecorder holds, exactly."""

    started: float
    interval: float
    latency: dict[str, LatencyState]
    uncorrected: LatencyState
    uncorrected_rejections: LatencyState
    status_codes: dict[int, int]
    timeline: list[IntervalState]
    max_lag: float
    by_priority: dict[str, ClassState]


class GeneratorReport(msgspec.Struct, frozen=True):
    """What one generator measured, and what the open-loop report needs from its engine."""

    recorder: RecorderState
    #: The monotonic time at which it stopped sending and every request had ended.
    ended: float
    #: CPU (user + system) it used from the start of measuring to `ended`.
    cpu_seconds: float
    sent: int
    last_send: float
    #: Open loop: the slots its schedule issued.
    scheduled: int
    interrupted: bool


class Ready(msgspec.Struct, tag=True, frozen=True):
    pass


class Begin(msgspec.Struct, tag=True, frozen=True):
    #: time.perf_counter() at which to start (warm-up first, then measuring).
    at: float


class Stop(msgspec.Struct, tag=True, frozen=True):
    pass


class Progress(msgspec.Struct, tag=True, frozen=True):
    completed: int


class Finished(msgspec.Struct, tag=True, frozen=True):
    report: GeneratorReport


class Failed(msgspec.Struct, tag=True, frozen=True):
    error: str


ToGenerator = Begin | Stop
FromGenerator = Ready | Progress | Finished | Failed

ENCODER = msgspec.msgpack.Encoder()
TO_GENERATOR = msgspec.msgpack.Decoder(ToGenerator)
FROM_GENERATOR = msgspec.msgpack.Decoder(FromGenerator)


def recorder_state(recorder: RunRecorder) -> RecorderState:
    """`recorder` as plain data (`recorder_from_state` rebuilds an equal one)."""
    return RecorderState(
        started=recorder.started,
        interval=recorder.interval,
        latency={outcome: r.to_state() for outcome, r in recorder.latency.items()},
        uncorrected=recorder.uncorrected.to_state(),
        uncorrected_rejections=recorder.uncorrected_rejections.to_state(),
        status_codes=dict(recorder.status_codes),
        timeline=[
            IntervalState(slot.start, _plain(slot.counts), slot.latency.to_state())
            for slot in recorder.timeline
        ],
        max_lag=recorder.max_lag,
        by_priority={
            name: ClassState(_plain(stats.counts), stats.success_latency.to_state())
            for name, stats in recorder.by_priority.items()
        },
    )


def recorder_from_state(state: RecorderState) -> RunRecorder:
    """The RunRecorder `state` describes; ValueError when it names an unknown outcome."""
    recorder = RunRecorder(state.started, state.interval)
    for outcome in OUTCOMES:
        if outcome in state.latency:
            recorder.latency[outcome].merge(LatencyRecorder.from_state(state.latency[outcome]))
    _check_outcomes(state.latency)
    recorder.uncorrected.merge(LatencyRecorder.from_state(state.uncorrected))
    recorder.uncorrected_rejections.merge(LatencyRecorder.from_state(state.uncorrected_rejections))
    recorder.status_codes.update(state.status_codes)
    for slot in state.timeline:
        interval = Interval(slot.start, latency=LatencyRecorder.from_state(slot.latency))
        _add_counts(interval.counts, slot.counts)
        recorder.timeline.append(interval)
    recorder.max_lag = state.max_lag
    for name, stats in state.by_priority.items():
        own = ClassStats(success_latency=LatencyRecorder.from_state(stats.success_latency))
        _add_counts(own.counts, stats.counts)
        recorder.by_priority[name] = own
    return recorder


def _plain(counts: Mapping[Outcome, int]) -> dict[str, int]:
    return {str(outcome): count for outcome, count in counts.items()}


def _add_counts(into: dict[Outcome, int], counts: dict[str, int]) -> None:
    _check_outcomes(counts)
    for outcome in OUTCOMES:
        into[outcome] += counts.get(outcome, 0)


def _check_outcomes(names: Mapping[str, object]) -> None:
    unknown = set(names) - set(OUTCOMES)
    if unknown:
        raise ValueError(f"generator report: unknown outcomes {sorted(unknown)}")


def watch_blocking(
    loop: asyncio.AbstractEventLoop, fd: int, callback: Callable[..., object], *args: object
) -> None:
    """`loop.add_reader`, leaving the descriptor blocking. uvloop (libuv's poll handle) makes
    a watched descriptor non-blocking, and a pipe message read in pieces then stops halfway
    with BlockingIOError: a generator's report was taken for an exit without one. A reader
    called back here reads one whole message, which its writer is sending in full."""
    loop.add_reader(fd, callback, *args)
    os.set_blocking(fd, True)
