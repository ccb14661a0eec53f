"""codel: CoDel queue timeouts and adaptive LIFO, driven by a hand-moved clock.

One worker, so every request after the first waits in the queue, and the order in which the
backend sees them is the order the queue served them. The clock starts at 0 so that the
interval's edge (0.1 s) is an exact float.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from carebench.backends.records import synthetic_patient
from carebench.errors import ConfigError, Rejected
from carebench.loop_clock import ManualLoopClock
from carebench.models import Patient, Query
from carebench.patterns.base import PatternConfig, create_pattern
from carebench.patterns.codel import CoDelPattern, CoDelState
from carebench.patterns.stats import PatternStats
from carebench.server.process import ServerProcess
from tests.fakes import GatedBackend

CONFIG = PatternConfig(workers=1, queue_size=16)
#: Binary fractions (1/128 s, 1/8 s), so the edges of the timeouts are exact floats.
EXACT = PatternConfig(workers=1, queue_size=16, codel_target=2**-7, codel_interval=2**-3)


class StepBackend(GatedBackend):
    """Holds each query until the test finishes it by id, or until `release` opens the gate."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: dict[str, asyncio.Future[None]] = {}

    async def get_patient(self, patient_id: str, deadline: float | None = None) -> Patient:
        self.calls.append(patient_id)
        if not self.gate.is_set():
            turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self.pending[patient_id] = turn
            self.active += 1
            try:
                await turn
            finally:
                self.active -= 1
        return synthetic_patient(patient_id)

    async def finish(self, *patient_ids: str) -> None:
        """Let these queries answer, and let the pattern act on it."""
        for patient_id in patient_ids:
            self.pending.pop(patient_id).set_result(None)
        await settle()

    def release(self) -> None:
        self.gate.set()
        for turn in self.pending.values():
            turn.set_result(None)
        self.pending.clear()

    def hold(self) -> None:
        """Queries sent from now on wait again for `finish` or `release`."""
        self.gate.clear()


@dataclass
class Rig:
    pattern: CoDelPattern
    clock: ManualLoopClock
    backend: StepBackend

    def submit(self, patient_id: str, priority: str = "standard") -> asyncio.Task[Any]:
        deadline = asyncio.get_running_loop().time() + 5.0
        query = Query(patient_id, deadline, f"req-{patient_id}", priority=priority)
        return asyncio.create_task(self.pattern.submit(query))

    async def occupy_worker(self) -> asyncio.Task[Any]:
        """A request holding the only worker until the test finishes or releases it."""
        busy = self.submit("P-busy")
        await self.backend.wait_active(1)
        return busy

    async def queue(self, *patient_ids: str, priority: str = "standard") -> list[asyncio.Task[Any]]:
        """Submit requests now and let them reach the queue."""
        tasks = [self.submit(patient_id, priority) for patient_id in patient_ids]
        await settle()
        return tasks


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


@contextlib.asynccontextmanager
async def running(config: PatternConfig = CONFIG) -> AsyncIterator[Rig]:
    """A started codel pattern on a manual clock at 0, in front of a StepBackend."""
    backend = StepBackend()
    clock = ManualLoopClock(start=0.0)
    pattern = create_pattern("codel", backend, config, clock)
    assert isinstance(pattern, CoDelPattern)
    await pattern.start()
    await settle()  # the workers park, idle
    try:
        yield Rig(pattern, clock, backend)
    finally:
        backend.release()
        await pattern.shutdown(drain_timeout=1.0)


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    async with running() as built:
        yield built


async def test_defaults_are_the_papers() -> None:
    """With no flags the target is 5 ms and the interval 100 ms."""
    config = PatternConfig()
    assert (config.codel_target, config.codel_interval) == (0.005, 0.1)


@pytest.mark.parametrize(
    ("target", "interval", "message"),
    [
        (0.0, 0.1, "--codel-target (0 ms) must be > 0"),
        (0.005, 0.004, "--codel-interval (4 ms) must be >= --codel-target (5 ms)"),
    ],
)
def test_bad_settings_are_refused(target: float, interval: float, message: str) -> None:
    """A zero target or an interval shorter than the target is a ConfigError naming both."""
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        PatternConfig(codel_target=target, codel_interval=interval)


def test_state_machine_edges() -> None:
    """Congested once the queue has stood longer than an interval; healthy again only after an
    interval with nothing shed, however soon the queue empties."""
    state = CoDelState(target=0.005, interval=0.1)
    assert not state.update(50.0) and state.timeout == 0.1
    state.queued(0.0)
    state.queued(0.05)  # already standing: the later arrival does not restart the clock
    assert not state.update(0.1) and state.timeout == 0.1
    assert state.update(0.1 + 1e-9) and state.timeout == 0.005 and state.episodes == 1
    state.emptied()
    assert state.update(0.2)  # empty, but not an interval since congestion began
    state.shed(0.15)
    assert state.update(0.25)  # 100 ms since the last shed, not more
    assert not state.update(0.25 + 1e-9) and state.timeout == 0.1
    assert not state.update(10.0)  # still empty: nothing stands
    state.queued(10.0)
    assert state.update(10.2) and state.episodes == 2


def test_leaving_congestion_restarts_the_standing_clock() -> None:
    """Requests still queued when congestion ends count as standing from then, not before."""
    state = CoDelState(target=0.005, interval=0.1)
    state.queued(0.0)
    assert state.update(0.2) and state.episodes == 1
    assert not state.update(0.31)  # an interval with nothing shed, queue never emptied
    assert not state.update(0.41)
    assert state.update(0.42) and state.episodes == 2


async def test_healthy_queue_is_fifo_with_the_long_timeout(rig: Rig) -> None:
    """A queue that has stood exactly one interval is still healthy: nothing shed, oldest first."""
    busy = await rig.occupy_worker()
    queued = await rig.queue("P0", "P1", "P2")
    rig.clock.advance(0.1)
    stats = rig.pattern.stats()
    assert stats["congested"] is False and stats["queue_timeout_ms"] == 100.0
    assert stats["queued"] == 3
    rig.backend.release()
    await asyncio.gather(busy, *queued)
    assert rig.backend.calls == ["P-busy", "P0", "P1", "P2"]
    stats = rig.pattern.stats()
    assert stats["shed_queue_timeout"] == 0 and stats["served_lifo"] == 0
    assert stats["congested_episodes"] == 0


async def test_standing_queue_turns_congested_short_timeout_lifo(rig: Rig) -> None:
    """Past an interval of standing: waits over 5 ms are shed, the rest served newest first."""
    busy = await rig.occupy_worker()
    (old,) = await rig.queue("P-old")
    rig.clock.advance(0.099)  # P-old has waited 99 ms: within the healthy 100 ms
    young = await rig.queue("P0", "P1", "P2")
    assert rig.pattern.stats()["shed_queue_timeout"] == 0
    rig.clock.advance(0.002)  # the queue has now stood 101 ms
    stats = rig.pattern.stats()
    assert stats["congested"] is True and stats["queue_timeout_ms"] == 5.0
    rig.backend.release()
    with pytest.raises(Rejected) as shed:
        await old
    assert shed.value.retry_after >= 1
    assert "waited 101 ms in the queue, over its 5 ms timeout" in str(shed.value)
    patients = await asyncio.gather(*young)
    await busy
    assert [p.id for p in patients] == ["P0", "P1", "P2"]
    assert rig.backend.calls == ["P-busy", "P2", "P1", "P0"]
    stats = rig.pattern.stats()
    assert stats["shed_queue_timeout"] == 1 and stats["served_lifo"] == 3
    assert stats["congested_episodes"] == 1
    assert stats["rejected_queue_full"] == 0 and stats["expired_in_queue"] == 0


async def test_congested_shedding_edge_is_the_target() -> None:
    """While congested a request that waited exactly the target is kept; a hair more is shed."""
    target, interval = EXACT.codel_target, EXACT.codel_interval
    async with running(EXACT) as rig:
        busy = await rig.occupy_worker()
        (anchor,) = await rig.queue("P-anchor")  # the queue stands from t=0
        rig.clock.advance(interval + target)
        (edge,) = await rig.queue("P-edge")  # arrives congested: sheds the anchor
        with pytest.raises(Rejected):
            await anchor
        rig.clock.advance(target)
        (kept,) = await rig.queue("P-kept")  # P-edge has waited exactly the target: kept
        assert rig.pattern.stats()["shed_queue_timeout"] == 1
        rig.clock.advance(2**-20)
        (late,) = await rig.queue("P-late")  # P-edge is now past it: shed
        with pytest.raises(Rejected):
            await edge
        rig.backend.release()
        await asyncio.gather(busy, kept, late)
        assert rig.backend.calls == ["P-busy", "P-late", "P-kept"]
        assert rig.pattern.stats()["shed_queue_timeout"] == 2


async def test_emptied_by_shedding_stays_congested(rig: Rig) -> None:
    """A queue the timeout emptied (workers still busy) still stands: LIFO, short timeout."""
    busy = await rig.occupy_worker()
    (old,) = await rig.queue("P-old")
    rig.clock.advance(0.101)
    (first,) = await rig.queue("P-first")  # sheds P-old, leaving only itself
    with pytest.raises(Rejected):
        await old
    rig.clock.advance(0.003)
    (second,) = await rig.queue("P-second")
    assert rig.pattern.stats()["congested"] is True
    rig.backend.release()
    await asyncio.gather(busy, first, second)
    assert rig.backend.calls == ["P-busy", "P-second", "P-first"]


async def test_calm_interval_switches_back_to_fifo_and_the_long_timeout(rig: Rig) -> None:
    """An interval after the last shed the queue is healthy: 100 ms timeout, oldest first."""
    busy = await rig.occupy_worker()
    await rig.queue("P-old")
    rig.clock.advance(0.101)
    congested = await rig.queue("C0", "C1")  # sheds P-old at 101 ms
    rig.backend.release()
    await asyncio.gather(busy, *congested)
    assert rig.pattern.stats()["congested"] is True  # drained, but not calm for long enough
    rig.clock.advance(0.099)
    assert rig.pattern.stats()["congested"] is True
    rig.clock.advance(0.002)
    stats = rig.pattern.stats()
    assert stats["congested"] is False and stats["queue_timeout_ms"] == 100.0

    rig.backend.hold()
    busy = await rig.occupy_worker()
    healthy = await rig.queue("H0", "H1")
    rig.clock.advance(0.05)  # 50 ms: ten times the target, half the interval
    rig.backend.release()
    await asyncio.gather(busy, *healthy)
    assert rig.backend.calls[-3:] == ["P-busy", "H0", "H1"]
    stats = rig.pattern.stats()
    assert stats["shed_queue_timeout"] == 1 and stats["congested_episodes"] == 1


async def test_healthy_queue_taken_to_empty_starts_standing_afresh(rig: Rig) -> None:
    """A worker taking the last request of a healthy queue resets how long it has stood."""
    busy = await rig.occupy_worker()
    (first,) = await rig.queue("P-first")
    rig.clock.advance(0.09)
    await rig.backend.finish("P-busy")  # takes P-first at 90 ms: the queue is empty
    later = await rig.queue("L0", "L1")  # the queue stands again from 90 ms
    rig.clock.advance(0.05)  # 140 ms since P-first queued, 50 ms since it emptied
    assert rig.pattern.stats()["congested"] is False
    rig.backend.release()
    await asyncio.gather(busy, first, *later)
    assert rig.backend.calls == ["P-busy", "P-first", "L0", "L1"]
    assert rig.pattern.stats()["shed_queue_timeout"] == 0


async def test_congested_queue_emptied_stays_congested_until_calm(rig: Rig) -> None:
    """Emptying a congested queue does not end congestion; an interval with no shed does."""
    busy = await rig.occupy_worker()
    await rig.queue("P-anchor")
    rig.clock.advance(0.101)
    (last,) = await rig.queue("P-last")  # the anchor is shed; P-last waits alone
    await rig.backend.finish("P-busy")  # the worker takes P-last: the queue is empty
    assert rig.backend.calls == ["P-busy", "P-last"]
    assert rig.pattern.stats()["congested"] is True
    later = await rig.queue("L0", "L1")
    rig.clock.advance(0.004)
    (newest,) = await rig.queue("L2")
    rig.clock.advance(0.002)  # L0 and L1 have waited 6 ms, L2 2 ms
    await rig.backend.finish("P-last")  # sheds L0 and L1, takes L2
    assert rig.backend.calls[-1] == "L2"
    for task in later:
        with pytest.raises(Rejected):
            await task
    await rig.backend.finish("L2")  # the worker finds nothing waiting
    assert rig.pattern.stats()["congested"] is True
    rig.clock.advance(0.099)  # 99 ms since L0 and L1 were shed
    (calm,) = await rig.queue("P-calm")  # to an idle worker: nothing queues, nothing is shed
    assert rig.pattern.stats()["congested"] is True
    rig.clock.advance(0.002)
    stats = rig.pattern.stats()
    assert stats["congested"] is False and stats["queue_timeout_ms"] == 100.0
    rig.backend.release()
    await asyncio.gather(busy, last, newest, calm)


async def test_emptied_with_the_timeouts_help_stays_congested(rig: Rig) -> None:
    """A worker that takes the last request only after shedding the rest has not caught up."""
    busy = await rig.occupy_worker()
    (old,) = await rig.queue("P-old")
    rig.clock.advance(0.1)
    (young,) = await rig.queue("P-young")
    rig.clock.advance(0.001)
    await rig.backend.finish("P-busy")  # sheds P-old (101 ms), then takes P-young, the last
    with pytest.raises(Rejected):
        await old
    assert rig.pattern.stats()["congested"] is True
    (later,) = await rig.queue("P-later")
    rig.clock.advance(0.01)  # P-later has waited 10 ms: over the target
    await rig.backend.finish("P-young")
    with pytest.raises(Rejected):
        await later
    await asyncio.gather(busy, young)
    assert rig.backend.calls == ["P-busy", "P-young"]


async def test_priority_classes_first_then_lifo_within_each(rig: Rig) -> None:
    """While congested critical goes before standard before batch, each newest first."""
    busy = await rig.occupy_worker()
    await rig.queue("P-anchor")
    rig.clock.advance(0.099)
    tasks = []
    for name, priority in [
        ("b1", "batch"),
        ("s1", "standard"),
        ("c1", "critical"),
        ("s2", "standard"),
        ("c2", "critical"),
        ("b2", "batch"),
    ]:
        tasks += await rig.queue(name, priority=priority)
    rig.clock.advance(0.002)
    rig.backend.release()
    await asyncio.gather(busy, *tasks)
    assert rig.backend.calls == ["P-busy", "c2", "c1", "s2", "s1", "b2", "b1"]


async def test_priority_classes_fifo_while_healthy(rig: Rig) -> None:
    """While healthy the same kind of arrivals are served by class, each oldest first."""
    busy = await rig.occupy_worker()
    tasks = []
    for name, priority in [
        ("b1", "batch"),
        ("s1", "standard"),
        ("c1", "critical"),
        ("c2", "critical"),
    ]:
        tasks += await rig.queue(name, priority=priority)
    rig.backend.release()
    await asyncio.gather(busy, *tasks)
    assert rig.backend.calls == ["P-busy", "c1", "c2", "s1", "b1"]


async def test_every_request_is_answered_exactly_once() -> None:
    """Through congestion, shedding and recovery, each request succeeds or is refused, once."""
    config = PatternConfig(workers=2, queue_size=6)
    answers: dict[str, list[str]] = {}

    async def send(rig: Rig, name: str, priority: str) -> None:
        try:
            await rig.submit(name, priority)
        except Rejected:
            answers.setdefault(name, []).append("refused")
        else:
            answers.setdefault(name, []).append("ok")

    async with running(config) as rig:
        tasks = []
        classes = ("critical", "standard", "batch")
        for step in range(90):
            tasks.append(asyncio.create_task(send(rig, f"R{step}", classes[step % 3])))
            await settle()
            # Overload for 60 steps (one arrival per 4 ms, one answer per 12 ms), then calm.
            rig.clock.advance(0.004)
            if rig.backend.pending and (step % 3 == 0 or step >= 60):
                await rig.backend.finish(*list(rig.backend.pending))
        rig.backend.release()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=5)
        stats = rig.pattern.stats()

    assert sorted(answers) == sorted(f"R{step}" for step in range(90))
    assert all(len(outcomes) == 1 for outcomes in answers.values()), answers
    succeeded = sorted(name for name, outcomes in answers.items() if outcomes == ["ok"])
    assert sorted(rig.backend.calls) == succeeded  # each success ran once, no refusal ran
    refused = 90 - len(succeeded)
    assert refused == (
        stats["shed_queue_timeout"] + stats["rejected_queue_full"] + stats["shed_for_priority"]
    )
    assert stats["shed_queue_timeout"] > 0 and stats["congested_episodes"] >= 1
    assert stats["served_lifo"] > 0
    assert stats["in_flight"] == 0 and stats["queued"] == 0


async def wait_until_healthy(client: httpx.AsyncClient) -> PatternStats:
    """Poll /metrics until the queue is healthy again (an interval after the last shed)."""
    for _ in range(200):
        state: PatternStats = (await client.get("/metrics")).json()["pattern_state"]
        if not state["congested"]:
            return state
        await asyncio.sleep(0.01)
    raise AssertionError("the queue stayed congested for 2 s with no load")


@pytest.mark.slow
async def test_real_server_sheds_a_standing_queue_and_exports_it() -> None:
    """`serve --pattern codel` with defaults: a queue stuck behind a slow query is shed (503 +
    Retry-After), /metrics (JSON and Prometheus) counts it, and the queue turns healthy again."""
    slow = ["--db-profile", "ideal", "--min-latency", "300", "--max-latency", "300"]
    args = ["--pattern", "codel", "--workers", "1", "--error-rate", "0", "--quiet", *slow]
    with ServerProcess(args) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            responses = await asyncio.gather(
                *(client.get(f"/api/v1/patients?id=P{i}") for i in range(10))
            )
            metrics = (await client.get("/metrics")).json()
            prometheus = (await client.get("/metrics?format=prometheus")).text
            calm = await wait_until_healthy(client)
    assert calm["congested"] is False and calm["queue_timeout_ms"] == 100.0
    refused = [r for r in responses if r.status_code == 503]
    assert sorted({r.status_code for r in responses}) == [200, 503]
    assert len(refused) >= 5, [r.status_code for r in responses]
    assert all(int(r.headers["retry-after"]) >= 1 for r in refused)
    assert all("ms timeout" in r.json()["error"] for r in refused)
    state = metrics["pattern_state"]
    assert state["name"] == "codel"
    assert state["shed_queue_timeout"] == metrics["rejected_requests"] == len(refused)
    assert state["congested_episodes"] >= 1
    assert state["queue_timeout_ms"] == (5.0 if state["congested"] else 100.0)
    samples = {
        sample.name: sample.value
        for family in text_string_to_metric_families(prometheus)
        for sample in family.samples
        if sample.labels.get("pattern") == "codel"
    }
    assert samples["carebench_shed_queue_timeout_total"] == len(refused)
    congested = samples["carebench_queue_congested"]
    assert samples["carebench_queue_timeout_seconds"] == pytest.approx(0.005 if congested else 0.1)
    assert samples["carebench_congested_episodes_total"] >= 1
