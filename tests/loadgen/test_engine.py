"""The load engine: counts add up, outcomes are classified, schedules and CO correction hold."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time

import pytest

from carebench.loadgen.engine import Engine, Schedule
from carebench.loadgen.results import OUTCOMES, RunRecorder, classify
from tests.loadgen.fakes import ScriptedChannel, StallOnceChannel


def engine_with(statuses: list[int], clients: int, timeout: float = 5.0):
    state = {"active": 0, "peak": 0}
    script = itertools.cycle(statuses)
    channels = [ScriptedChannel(script, state) for _ in range(clients)]
    engine = Engine(channels, lambda: "P1", timeout, RunRecorder(time.perf_counter()))
    return engine, channels, state


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, "success"),
        (204, "success"),
        (503, "rejected"),
        (429, "rejected"),
        (500, "backend_error"),
        (504, "backend_error"),
        (400, "client_error"),
        (404, "client_error"),
    ],
)
def test_classify(status: int, outcome: str) -> None:
    """HTTP statuses map to outcomes: 2xx success, 503/429 rejected, 5xx errors, 4xx client."""
    assert classify(status) == outcome


async def test_closed_loop_sends_exactly_the_requests_at_the_concurrency() -> None:
    """N clients send `requests` in total, never more than N at once, each counted once."""
    engine, _, state = engine_with([200, 503, 500, 404], clients=7)
    await engine.closed_loop(101)
    summary = engine.recorder.summary(1.0)
    assert summary["total_requests"] == 101 == engine.sent
    assert state["peak"] == 7
    outcomes = summary["outcomes"]
    assert (
        outcomes["success"]
        + outcomes["rejected"]
        + outcomes["backend_error"]
        + outcomes["client_error"]
        == 101
    )
    assert summary["error_requests"] == outcomes["backend_error"] + outcomes["client_error"]
    assert summary["status_codes"] == {"200": 26, "404": 25, "500": 25, "503": 25}


async def test_timeouts_and_connection_errors_are_counted_apart() -> None:
    """A hung request is a timeout, a refused one a connection error; both reset the channel."""
    engine, channels, _ = engine_with([-2, -1, 200], clients=1, timeout=0.02)
    await engine.closed_loop(3)
    outcomes = engine.recorder.summary(1.0)["outcomes"]
    assert outcomes["timeout"] == 1
    assert outcomes["connection_error"] == 1
    assert outcomes["success"] == 1
    assert channels[0].resets == 2
    assert set(outcomes) == set(OUTCOMES)


def test_constant_schedule_has_exact_count_and_spacing() -> None:
    """rate x duration slots, evenly spaced, with no drift at the end."""
    schedule = Schedule(start=10.0, rate=100.0, end=13.0)
    slots = list(iter(schedule.take, None))
    assert len(slots) == 300
    assert slots[0] == 10.0
    assert slots[-1] == pytest.approx(12.99)
    assert all(b - a == pytest.approx(0.01) for a, b in itertools.pairwise(slots))


def test_poisson_schedule_averages_the_rate() -> None:
    """Exponential gaps: the count over a long window is within 4 sigma of rate x duration."""
    schedule = Schedule(0.0, 1000.0, 20.0, poisson=True, rng=random.Random(5))
    count = len(list(iter(schedule.take, None)))
    assert abs(count - 20_000) < 4 * 20_000**0.5
    gaps = Schedule(0.0, 1000.0, 1.0, poisson=True, rng=random.Random(6))
    slots = list(iter(gaps.take, None))
    assert len({round(b - a, 9) for a, b in itertools.pairwise(slots)}) > len(slots) // 2


@pytest.mark.slow
async def test_open_loop_charges_a_stall_to_the_requests_it_delayed() -> None:
    """With one connection, a 300 ms stall shows in the corrected latency, not the uncorrected."""
    channel = StallOnceChannel(stall=0.3)
    engine = Engine([channel], lambda: "P1", 5.0, RunRecorder(time.perf_counter()))
    start = time.perf_counter()
    await engine.open_loop(Schedule(start, 100.0, start + 0.6))
    corrected = engine.recorder.latency["success"].summary_ms()
    uncorrected = engine.recorder.uncorrected.summary_ms()
    assert engine.recorder.total == 60
    assert corrected["p90"] >= 100.0
    assert uncorrected["p90"] < 50.0
    assert uncorrected["max"] >= 290.0
    assert engine.recorder.max_lag >= 0.25


async def test_closed_loop_can_be_bounded_by_time() -> None:
    """With a time limit instead of a count, clients stop sending once it passes."""
    engine, _, _ = engine_with([200], clients=3)
    until = time.perf_counter() + 0.05
    await engine.closed_loop(float("inf"), until=until)
    assert engine.recorder.total == engine.sent > 0
    assert engine.last_send <= until


async def test_warm_up_is_forgotten_when_measuring_starts() -> None:
    """Requests sent before start_measuring count neither in the send rate nor the results."""
    engine, _, _ = engine_with([200], clients=2)
    await engine.closed_loop(10)
    fresh = RunRecorder(time.perf_counter())
    engine.start_measuring(fresh)
    await engine.closed_loop(4)
    assert engine.sent == 4
    assert fresh.total == 4


async def test_honouring_retry_after_pauses_refused_clients() -> None:
    """With --honor-retry-after a refused client sleeps Retry-After (at least 0.1 s) first."""
    state = {"active": 0, "peak": 0}
    channel = ScriptedChannel(itertools.cycle([503, 200, 429]), state, retry_after=2.0)
    pauses: list[float] = []

    async def record_pause(seconds: float) -> None:
        pauses.append(seconds)

    engine = Engine(
        [channel],
        lambda: "P1",
        5.0,
        RunRecorder(time.perf_counter()),
        honor_retry_after=True,
        sleep=record_pause,
    )
    await engine.closed_loop(6)
    assert pauses == [2.0, 2.0, 2.0, 2.0]
    silent = ScriptedChannel(itertools.cycle([503]), state)
    engine = Engine(
        [silent],
        lambda: "P1",
        5.0,
        RunRecorder(time.perf_counter()),
        honor_retry_after=True,
        sleep=record_pause,
    )
    await engine.closed_loop(1)
    assert pauses[-1] == 0.1


async def test_by_default_refused_clients_resend_at_once() -> None:
    """Without the flag, a refused client sends its next request immediately (the reference)."""
    state = {"active": 0, "peak": 0}
    channel = ScriptedChannel(itertools.cycle([503]), state, retry_after=2.0)
    pauses: list[float] = []

    async def record_pause(seconds: float) -> None:
        pauses.append(seconds)

    engine = Engine(
        [channel], lambda: "P1", 5.0, RunRecorder(time.perf_counter()), sleep=record_pause
    )
    await engine.closed_loop(5)
    assert pauses == []


async def test_every_hung_request_times_out_not_only_the_first() -> None:
    """The deadline watchdog keeps enforcing after a timeout: hung requests in a row all time
    out, on several clients at once, and the requests between them succeed."""
    engine, channels, _ = engine_with([-2, -2, 200, -2], clients=2, timeout=0.02)
    await engine.closed_loop(8)
    outcomes = engine.recorder.summary(1.0)["outcomes"]
    assert outcomes["timeout"] == 6
    assert outcomes["success"] == 2
    assert sum(channel.resets for channel in channels) == 6
    assert engine.recorder.latency["timeout"].summary_ms()["min"] >= 20.0


async def test_cancelling_the_run_is_not_counted_as_a_timeout() -> None:
    """A cancellation from outside (the run stopped) propagates instead of becoming a timeout."""
    engine, _, _ = engine_with([-2], clients=3, timeout=60.0)
    run = asyncio.ensure_future(engine.closed_loop(10))
    await asyncio.sleep(0.01)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert engine.recorder.total == 0


class SwallowingChannel:
    """Ignores the first cancellation and answers 200 anyway; hangs on later calls."""

    retry_after = 0.0

    def __init__(self) -> None:
        self.calls = 0

    async def fetch(self, patient_id: str, priority: str | None = None) -> int:
        self.calls += 1
        if self.calls == 1:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(3600)
            return 200
        await asyncio.sleep(3600)
        return 200

    def reset(self) -> None:
        return None

    def close(self) -> None:
        return None


async def test_a_swallowed_cancellation_does_not_disarm_later_deadlines() -> None:
    """A channel that swallows the watchdog's cancellation answers late (recorded as its
    status); the next hung request still times out."""
    engine = Engine([SwallowingChannel()], lambda: "P1", 0.02, RunRecorder(time.perf_counter()))
    await engine.closed_loop(2)
    outcomes = engine.recorder.summary(1.0)["outcomes"]
    assert (outcomes["success"], outcomes["timeout"]) == (1, 1)
