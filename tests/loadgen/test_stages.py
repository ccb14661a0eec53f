"""--stages: the load shape's parser, its open-loop schedule and its closed-loop client gating."""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import pytest

from carebench.errors import ConfigError
from carebench.loadgen.channels import HttpChannel
from carebench.loadgen.client import ResponseCallback
from carebench.loadgen.config import LoadConfig
from carebench.loadgen.engine import Engine, Schedule, Stepped
from carebench.loadgen.results import RunRecorder
from carebench.loadgen.stages import LoadShape, Stage, StagesError, parse_stages
from tests.loadgen.test_callback_loop import TaskOnly, server


def test_an_open_shape_is_read_with_its_durations_and_rates() -> None:
    """Rates end in /s; durations take s, ms or no unit; the shape knows its timing."""
    shape = parse_stages("10s@100/s, 500ms@400/s,2@50/s")
    assert shape == LoadShape((Stage(10, 100), Stage(0.5, 400), Stage(2, 50)), open=True)
    assert shape.duration == 12.5
    assert shape.ends == (10.0, 10.5, 12.5)
    assert (shape.level_at(-1), shape.level_at(9.99), shape.level_at(10.0)) == (100, 100, 400)
    assert (shape.level_at(12.4), shape.level_at(99)) == (50, 50)
    assert (shape.next_change(0), shape.next_change(10.2), shape.next_change(13)) == (
        10,
        10.5,
        float("inf"),
    )
    assert shape.peak == 400
    assert shape.mean_level == pytest.approx((1000 + 200 + 100) / 12.5)
    assert parse_stages(shape.describe()) == shape


def test_a_closed_shape_counts_clients() -> None:
    shape = parse_stages("1s@5,2s@50")
    assert not shape.open
    assert (shape.peak, shape.describe()) == (50, "1s@5,2s@50")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "DURATION@LEVEL"),
        ("10s", "cannot read stage '10s'"),
        ("10x@5", "cannot read stage '10x@5'"),
        ("10s@fast", "cannot read stage"),
        ("0s@5", "duration must be > 0"),
        ("10s@0/s", "level must be > 0"),
        ("10s@2.5", "whole number of clients"),
        ("1s@5,1s@50/s", "mix rates"),
    ],
)
def test_an_invalid_shape_is_refused_naming_the_stage(text: str, message: str) -> None:
    with pytest.raises(StagesError, match=message):
        parse_stages(text)


def test_stages_set_the_duration_and_exclude_rate_and_duration() -> None:
    """A shape sets the run's duration and loop; --rate or --duration with it is an error,
    and a closed shape opens as many connections as its peak clients."""
    config = LoadConfig(stages="1s@5,2s@20")
    assert (config.duration, config.loop, config.connections) == (3.0, "closed", 20)
    assert LoadConfig(stages="1s@5/s", concurrency=7).loop == "open"
    assert LoadConfig(stages="1s@5/s", concurrency=7).connections == 7
    with pytest.raises(ConfigError, match="leave out --rate and --duration"):
        LoadConfig(stages="1s@5", duration=3)
    with pytest.raises(ConfigError, match="leave out --rate and --duration"):
        LoadConfig(stages="1s@5/s", rate=3)
    with pytest.raises(ConfigError, match="mix rates"):
        LoadConfig(stages="1s@5/s,1s@5")


def test_a_constant_staged_schedule_sends_each_stage_at_its_rate() -> None:
    """Exactly seconds x rate slots in each stage, evenly spaced from the stage's start."""
    shape = parse_stages("2s@10/s,1s@100/s,2s@5/s")
    schedule = Schedule(100.0, shape.mean_level, 105.0, shape=shape)
    slots = list(iter(schedule.take, None))
    per_stage = [
        sum(100 <= t < 102 for t in slots),
        sum(102 <= t < 103 for t in slots),
        sum(103 <= t < 105 for t in slots),
    ]
    assert per_stage == [20, 100, 10]
    assert slots[20] == 102.0 and slots[21] == pytest.approx(102.01)
    assert slots[120] == 103.0 and slots[-1] == pytest.approx(104.8)
    assert schedule.issued == 130


def test_a_poisson_staged_schedule_follows_each_stage_on_average() -> None:
    shape = parse_stages("20s@50/s,20s@500/s")
    schedule = Schedule(0.0, shape.mean_level, 40.0, True, random.Random(3), shape)
    slots = list(iter(schedule.take, None))
    first, second = sum(t < 20 for t in slots), sum(t >= 20 for t in slots)
    assert first == pytest.approx(1000, rel=0.1)
    assert second == pytest.approx(10_000, rel=0.05)


class LoggingChannel(HttpChannel):
    """An HttpChannel that notes when it sends, on either path of the closed loop."""

    def __init__(self, port: int) -> None:
        super().__init__("127.0.0.1", port)
        self.sent_at: list[float] = []

    def send_then(self, patient_id: str, priority: str | None, on_done: ResponseCallback) -> bool:
        sent = super().send_then(patient_id, priority, on_done)
        if sent:
            self.sent_at.append(time.perf_counter())
        return sent

    @property
    def send_encoded(self) -> Callable[[bytes, ResponseCallback], None] | None:
        """The callback loop's fast path for a request already encoded: logged as well."""
        send = super().send_encoded
        if send is None:
            return None

        def logged(request: bytes, on_done: ResponseCallback) -> None:
            send(request, on_done)
            self.sent_at.append(time.perf_counter())

        return logged

    async def fetch(self, patient_id: str, priority: str | None = None) -> int:
        self.sent_at.append(time.perf_counter())
        return await super().fetch(patient_id, priority)


@pytest.mark.parametrize("via", ["callbacks", "tasks"])
async def test_a_closed_shape_lets_only_each_stages_clients_send(via: str) -> None:
    """1 client, then 3, then 1 again: clients 2 and 3 send only during the middle stage
    (allowing for a request in flight at its end), client 1 throughout."""
    async with server() as (port, _):
        logged = [LoggingChannel(port) for _ in range(3)]
        channels = logged if via == "callbacks" else [TaskOnly(c) for c in logged]
        engine = Engine(channels, lambda: "ok", 5.0, RunRecorder(time.perf_counter()))
        shape = parse_stages("0.2s@1,0.2s@3,0.2s@1")
        start = time.perf_counter()
        await engine.closed_loop(float("inf"), start + shape.duration, Stepped(shape, start))
        for channel in logged:
            channel.close()
    first, *others = logged
    assert min(first.sent_at) < start + 0.05 and max(first.sent_at) > start + 0.45
    for channel in others:
        assert channel.sent_at, "a client of the middle stage never sent"
        assert min(channel.sent_at) >= start + 0.2
        assert max(channel.sent_at) < start + 0.4 + 0.02
    assert engine.recorder.total == sum(len(c.sent_at) for c in logged)
