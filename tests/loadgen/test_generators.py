"""--generators N: the split of a load, where generators run, and the exact merge of results."""

from __future__ import annotations

import asyncio
import itertools
import math
import multiprocessing
import os
import random
from typing import Any

import msgspec
import pytest
import uvloop

from carebench.errors import ConfigError
from carebench.loadgen.config import LoadConfig
from carebench.loadgen.describe import ScheduleTally, open_loop_report
from carebench.loadgen.engine import Schedule
from carebench.loadgen.generators import Placement, merge_reports, place_generators
from carebench.loadgen.results import OUTCOMES, RunRecorder
from carebench.loadgen.shares import split_load, split_whole
from carebench.loadgen.wire import (
    ENCODER,
    FROM_GENERATOR,
    Finished,
    GeneratorReport,
    recorder_from_state,
    recorder_state,
    watch_blocking,
)

STARTED = 1000.0
Sample = tuple[Any, ...]


def samples(count: int, seed: int = 7) -> list[Sample]:
    """Requests of every outcome, latencies from 1 us to past a minute, over ~6 s, some with
    a priority and an uncorrected latency."""
    rng = random.Random(seed)
    statuses = {"success": 200, "rejected": 503, "backend_error": 500, "client_error": 404}
    made = []
    for _ in range(count):
        outcome = rng.choices(OUTCOMES, weights=(70, 10, 8, 4, 4, 4))[0]
        latency = min(rng.lognormvariate(-5, 2), 90.0)
        done = STARTED + rng.uniform(-0.1, 6.0)
        uncorrected = latency * rng.random() if rng.random() < 0.5 else -1.0
        priority = rng.choice([None, "critical", "standard", "batch"])
        made.append((outcome, latency, done, statuses.get(outcome, 0), uncorrected, priority))
    return made


def fed(requests: list[Sample]) -> RunRecorder:
    recorder = RunRecorder(STARTED)
    for sample in requests:
        recorder.record(*sample)
        recorder.note_lag(sample[1] / 7)
    return recorder


def through_the_wire(recorder: RunRecorder) -> RunRecorder:
    """The recorder as a generator process sends it and the parent reads it back."""
    report = GeneratorReport(recorder_state(recorder), 0.0, 0.0, 0, 0.0, 0, False)
    message = FROM_GENERATOR.decode(ENCODER.encode(Finished(report)))
    assert isinstance(message, Finished)
    return recorder_from_state(message.report.recorder)


@pytest.mark.parametrize("parts", [1, 2, 3, 8])
def test_merging_generators_equals_one_recorder_fed_every_request(parts: int) -> None:
    """N recorders merged (after the wire) hold exactly what one fed all requests holds."""
    requests = samples(20_000)
    rng = random.Random(parts)
    shares: list[list[Sample]] = [[] for _ in range(parts)]
    for sample in requests:
        shares[rng.randrange(parts)].append(sample)
    merged = RunRecorder(STARTED)
    for share in shares:
        merged.merge(through_the_wire(fed(share)))
    whole = fed(requests)
    assert merged.summary(6.0) == whole.summary(6.0)
    assert merged.uncorrected.summary_ms() == whole.uncorrected.summary_ms()
    assert merged.uncorrected_rejections.summary_ms() == whole.uncorrected_rejections.summary_ms()
    assert merged.max_lag == whole.max_lag
    for outcome, percentile in itertools.product(OUTCOMES, (0.1, 1, 25, 50, 90, 99, 99.99, 100)):
        got = merged.latency[outcome].percentile_ms(percentile)
        assert got == whole.latency[outcome].percentile_ms(percentile)


def test_merged_percentiles_are_the_whole_runs_not_an_average() -> None:
    """A fast and a slow generator: the merged p99 is the combined one, not their mean."""
    fast = [("success", 0.001, STARTED + 1, 200, -1.0, None)] * 990
    slow = [("success", 1.0, STARTED + 1, 200, -1.0, None)] * 10
    merged = RunRecorder(STARTED)
    merged.merge(fed(fast))
    merged.merge(fed(slow))
    p99 = merged.summary(1.0)["latency_ms"]["p99"]
    assert p99 == fed(fast + slow).summary(1.0)["latency_ms"]["p99"]
    assert p99 == pytest.approx(1.0, abs=0.001)
    fast_p99 = fed(fast).summary(1.0)["latency_ms"]["p99"]
    assert p99 != pytest.approx((fast_p99 + 1000.0) / 2, rel=0.01)


def test_runs_of_different_start_times_do_not_merge() -> None:
    """Timeline slots only line up on a common start: anything else is refused."""
    with pytest.raises(ValueError, match="started at"):
        RunRecorder(STARTED).merge(RunRecorder(STARTED + 0.5))


def test_a_state_naming_an_unknown_outcome_is_refused() -> None:
    """A report with an outcome carebench does not know is an error, not silently dropped."""
    recorder = fed(samples(100))
    state = recorder_state(recorder)
    broken = msgspec.structs.replace(
        state, latency={**state.latency, "teleported": state.latency["success"]}
    )
    with pytest.raises(ValueError, match="teleported"):
        recorder_from_state(broken)


def test_merge_reports_sums_counts_and_ends_with_the_last_generator() -> None:
    """The run's duration is to the last generator's end; sends and slots are summed."""
    first, second = fed(samples(500, 1)), fed(samples(700, 2))
    reports = [
        GeneratorReport(recorder_state(first), STARTED + 5.0, 0.5, 500, STARTED + 4.9, 510, False),
        GeneratorReport(recorder_state(second), STARTED + 5.5, 0.7, 700, STARTED + 5.1, 690, True),
    ]
    run = merge_reports(reports, STARTED, [[1], [1]], [False, False])
    assert run.recorder.total == 1200
    assert run.duration == pytest.approx(5.5)
    assert (run.sent, run.scheduled, run.last_send) == (1200, 1200, STARTED + 5.1)
    assert run.interrupted
    assert [r["requests"] for r in run.runs] == [500, 700]
    assert [r["cpu_seconds"] for r in run.runs] == [0.5, 0.7]
    tally = run.schedule(240.0, False, STARTED, STARTED + 5.0)
    report = open_loop_report(run.recorder, tally)
    assert report["scheduled_requests"] == 1200
    assert report["achieved_rate"] == pytest.approx(1200 / 5.1, abs=0.01)
    assert isinstance(tally, ScheduleTally)


@pytest.mark.parametrize(
    ("total", "parts"), list(itertools.product([1, 2, 7, 100, 1001], [1, 2, 3, 7]))
)
def test_whole_shares_add_up_and_differ_by_at_most_one(total: int, parts: int) -> None:
    """split_whole loses nothing and is as even as whole numbers allow."""
    shares = split_whole(total, parts)
    assert sum(shares) == total
    assert len(shares) == parts
    assert max(shares) - min(shares) <= 1
    assert shares == sorted(shares, reverse=True)


def test_split_whole_needs_a_part() -> None:
    """Zero parts is a programming error, not a silent empty split."""
    with pytest.raises(ValueError):
        split_whole(5, 0)


@pytest.mark.parametrize("generators", [1, 2, 3, 4])
def test_budget_and_connections_are_split_exactly(generators: int) -> None:
    """A closed loop's --requests and --concurrency are divided with nothing lost."""
    load = LoadConfig(requests=1001, concurrency=10, generators=generators, seed=5)
    shares = split_load(load, generators)
    assert sum(share.requests for share in shares) == 1001
    assert sum(share.connections for share in shares) == 10
    assert [share.seed for share in shares] == [5 + k for k in range(generators)]
    assert all(share.rate is None and share.offset == 0 for share in shares)


def test_a_timed_run_gives_no_budget() -> None:
    """With --duration, generators send until the common end, not a request count."""
    load = LoadConfig(duration=2.0, concurrency=6, generators=3)
    assert [share.requests for share in split_load(load, 3)] == [0, 0, 0]


def slots(schedule: Schedule) -> list[float]:
    taken = []
    while (slot := schedule.take()) is not None:
        taken.append(slot)
    return taken


@pytest.mark.parametrize(("rate", "generators"), [(100.0, 2), (333.0, 3), (1000.0, 4), (7.0, 2)])
def test_constant_schedules_interleave_into_the_single_one(rate: float, generators: int) -> None:
    """Each generator's rate/N schedule, offset k/rate, together are the one at `rate`."""
    load = LoadConfig(rate=rate, duration=3.0, concurrency=8, generators=generators)
    single = slots(Schedule(0.0, rate, 3.0))
    union = sorted(
        itertools.chain.from_iterable(
            slots(Schedule(share.offset, share.rate or 0.0, 3.0))
            for share in split_load(load, generators)
        )
    )
    assert len(union) == len(single)
    assert union == pytest.approx(single, abs=1e-9)


def test_poisson_rates_split_evenly_with_distinct_seeds() -> None:
    """Poisson arrivals: rate/N each, no offset, a different stream per generator."""
    load = LoadConfig(
        rate=900.0, duration=1.0, concurrency=9, arrivals="poisson", generators=3, seed=1
    )
    shares = split_load(load, 3)
    assert [share.rate for share in shares] == [300.0, 300.0, 300.0]
    assert [share.offset for share in shares] == [0.0, 0.0, 0.0]
    assert len({share.seed for share in shares}) == 3


def test_open_stages_divide_each_rate() -> None:
    """An open-loop shape: every stage's rate is divided, durations kept."""
    load = LoadConfig(stages="1s@100/s,2s@400/s", concurrency=4, generators=2)
    for share in split_load(load, 2):
        assert share.shape is not None
        assert [(s.seconds, s.level) for s in share.shape.stages] == [(1.0, 50.0), (2.0, 200.0)]
        assert share.offset == pytest.approx(share.index / 100.0)
        assert share.connections == 2


def test_closed_stages_split_each_stages_clients() -> None:
    """A closed-loop shape: every stage's clients go out in whole shares that add up."""
    load = LoadConfig(stages="1s@3,1s@10,1s@5", generators=3)
    shares = split_load(load, 3)
    for stage in range(3):
        levels = [share.shape.stages[stage].level for share in shares if share.shape]
        assert sum(levels) == [3, 10, 5][stage]
    assert [share.connections for share in shares] == [4, 3, 3]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"generators": 0}, r"--generators \(0\) must be between 1 and 64"),
        ({"generators": 65, "concurrency": 100}, "between 1 and 64"),
        ({"generators": 4, "concurrency": 3}, r"must be <= the connections \(3\)"),
        ({"generators": 4, "requests": 3, "concurrency": 10}, r"must be <= --requests \(3\)"),
    ],
)
def test_impossible_generator_counts_are_refused(settings: dict[str, Any], message: str) -> None:
    """Every generator needs a connection (and, with a budget, a request)."""
    with pytest.raises(ConfigError, match=message):
        LoadConfig(**settings)


def test_a_timed_run_may_have_more_generators_than_requests() -> None:
    """--requests is not used with --duration, so it does not bound the generators."""
    assert LoadConfig(duration=1.0, requests=1, concurrency=4, generators=4).generators == 4


def test_generators_take_a_spare_core_each_while_they_last() -> None:
    """Spare cores first, then the spare cores again; the server keeps its own core."""
    assert place_generators(2, {0}, {1, 2}) == [Placement([1], False), Placement([2], False)]
    assert place_generators(3, {0}, {1, 2}) == [
        Placement([1], False),
        Placement([2], False),
        Placement([1], False),
    ]
    assert place_generators(2, {0}, {1}) == [Placement([1], False)] * 2


def test_a_targets_cpus_are_unknown() -> None:
    """With --target, generators spread over our CPUs and sharing is unknown (None)."""
    assert place_generators(2, None, {0, 1}) == [Placement([0], None), Placement([1], None)]


def test_with_no_spare_core_generators_are_not_pinned() -> None:
    """On one CPU (no split), generators are left unpinned, on the server's core."""
    assert place_generators(2, None, None) == [Placement([], None)] * 2
    assert place_generators(2, {0}, set()) == [Placement([], True)] * 2


def test_merge_of_nothing_is_an_empty_run() -> None:
    """No report (every generator stopped before starting) is an empty run, not a crash."""
    run = merge_reports([], STARTED, [], [])
    assert run.recorder.total == 0
    assert run.duration == 0.0
    assert math.isclose(run.last_send, 0.0)


def test_a_watched_pipe_stays_blocking_under_uvloop() -> None:
    """uvloop's add_reader makes a descriptor non-blocking, so a large report read in
    pieces stopped halfway (BlockingIOError, taken for an exit); watch_blocking undoes it."""

    async def watched() -> tuple[bool, bool]:
        ours, theirs = multiprocessing.Pipe()
        loop = asyncio.get_running_loop()
        try:
            loop.add_reader(ours.fileno(), lambda: None)
            plain = os.get_blocking(ours.fileno())
            loop.remove_reader(ours.fileno())
            watch_blocking(loop, ours.fileno(), lambda: None)
            return plain, os.get_blocking(ours.fileno())
        finally:
            loop.remove_reader(ours.fileno())
            ours.close()
            theirs.close()

    plain, watched_blocking = uvloop.run(watched())
    assert not plain
    assert watched_blocking
