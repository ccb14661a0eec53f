"""The shedder: its controller's answer to a step in load, priority order, the limit tuner, and
exact accounting of every request (gated or stepping fake backends, a manual clock)."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections import Counter
from collections.abc import Awaitable

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from carebench.backends.base import Backend
from carebench.backends.records import synthetic_patient
from carebench.errors import BackendError, ConfigError, Rejected
from carebench.loop_clock import ManualLoopClock
from carebench.models import PRIORITIES, Answer, Patient, Query
from carebench.patterns.base import PatternConfig
from carebench.patterns.shedder import (
    COHORT_ORDER,
    COHORTS,
    CONTROL_INTERVAL,
    KI,
    MAX_PRESSURE,
    ShedderPattern,
    cohorts_to_shed,
)
from carebench.server.process import ServerProcess
from tests.fakes import GatedBackend, id_of
from tests.patterns.conftest import query

#: 10 % critical, 70 % standard, 20 % batch: the mix of the issue's load test.
MIX = ("critical",) * 1 + ("standard",) * 7 + ("batch",) * 2


def shedder(
    backend: Backend,
    limit: int = 2,
    target: float = 0.02,
    queue_size: int = 200,
    shed_min_limit: int = 2,
    shed_max_limit: int = 200,
) -> tuple[ShedderPattern, ManualLoopClock]:
    clock = ManualLoopClock()
    config = PatternConfig(
        limit=limit,
        queue_size=queue_size,
        shed_target_delay=target,
        shed_min_limit=shed_min_limit,
        shed_max_limit=shed_max_limit,
    )
    return ShedderPattern(backend, config, clock), clock


def prioritised(patient_id: str, priority: str, timeout: float = 5.0) -> Query:
    built = query(patient_id, timeout)
    built.priority = priority
    return built


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def tick(pattern: ShedderPattern, clock: ManualLoopClock) -> float:
    clock.advance(CONTROL_INTERVAL)
    pattern.tick(clock.now())
    return pattern.shed_fraction


async def overload(
    pattern: ShedderPattern, backend: GatedBackend, count: int = 2
) -> list[asyncio.Task[Answer]]:
    """Fill the slots and queue `count` requests of the mix behind them (before any service
    time is known, the queue holds as many as the limit)."""
    tasks = [
        asyncio.create_task(pattern.submit(prioritised(f"Q{i}", MIX[i % len(MIX)])))
        for i in range(pattern.limit + count)
    ]
    await backend.wait_active(pattern.limit)
    await settle()
    return tasks


def assert_priority_order(shedding: dict[str, float]) -> None:
    """A class is shed only once every less urgent class is shed entirely."""
    for urgent, less in itertools.pairwise(PRIORITIES):
        if shedding[urgent] > 0:
            assert shedding[less] == 1.0, shedding


async def test_step_in_load_raises_the_threshold_least_urgent_first() -> None:
    """Queueing delay over target raises the shed fraction every interval; batch is shed in
    full before standard is touched, standard before critical, and critical never in full."""
    backend = GatedBackend()
    pattern, clock = shedder(backend, target=0.25)
    tasks = await overload(pattern, backend)
    fractions, seen = [], []
    for _ in range(30):
        fractions.append(tick(pattern, clock))
        seen.append(pattern.shedding_by_class())
        assert_priority_order(seen[-1])
    rising = fractions[2:]  # the oldest waiter passes the 0.25 s target on the third interval
    assert fractions[:2] == [0.0, 0.0]
    assert all(b > a for a, b in itertools.pairwise(rising[:10])), fractions
    first_batch = next(i for i, s in enumerate(seen) if s["batch"] > 0)
    first_standard = next(i for i, s in enumerate(seen) if s["standard"] > 0)
    assert first_batch < first_standard
    assert seen[-1]["critical"] == (COHORTS - 1) / COHORTS
    assert pattern.stats()["queue_delay_ms"] == pytest.approx(3000.0)
    backend.release()
    await asyncio.gather(*tasks)


async def test_refusals_follow_the_threshold_only_for_requests_that_would_queue() -> None:
    """While batch is shed, a batch request that would queue is refused at once with
    Retry-After, a critical one queues (shedding a queued standard one from the full queue);
    with a slot free, even batch is admitted."""
    backend = GatedBackend()
    pattern, clock = shedder(backend, target=0.2)
    tasks = await overload(pattern, backend)
    while pattern.shedding_by_class()["batch"] < 1.0 or pattern.shedding_by_class()["critical"]:
        tick(pattern, clock)
    with pytest.raises(Rejected, match="shedding batch") as refused:
        await pattern.submit(prioritised("B-late", "batch"))
    assert refused.value.retry_after >= 1
    critical = asyncio.create_task(pattern.submit(prioritised("C-late", "critical")))
    await settle()
    assert not critical.done()
    stats = pattern.stats()
    assert stats["shed_by_class"]["batch"] == 1
    assert stats["shed_for_priority"] == 1
    backend.release()
    results = await asyncio.gather(*tasks, critical, return_exceptions=True)
    outcomes = [type(result).__name__ for result in results]
    assert outcomes == ["Patient", "Patient", "Patient", "Rejected", "Patient"], outcomes
    assert pattern.shedding_by_class()["batch"] == 1.0, "no tick yet: still shedding"
    assert id_of(await pattern.submit(prioritised("B-free", "batch"))) == "B-free"


async def test_threshold_falls_back_when_load_drops() -> None:
    """Once the queue has drained, the fraction falls every interval back to zero."""
    backend = GatedBackend()
    pattern, clock = shedder(backend)
    tasks = await overload(pattern, backend)
    for _ in range(5):
        tick(pattern, clock)
    peak = pattern.shed_fraction
    assert peak > 0.9
    backend.release()
    await asyncio.gather(*tasks)
    # The first interval after the release still reports the waits of the drained queue.
    falling = [tick(pattern, clock) for _ in range(40)][1:]
    assert all(b < a for a, b in itertools.pairwise(falling) if a > 0), falling
    assert falling[-1] == 0.0
    assert pattern.shedding_by_class() == dict.fromkeys(PRIORITIES, 0.0)


async def test_a_quiet_spell_forgets_the_overload() -> None:
    """The first interval after ten idle seconds (no request, so no tick) counts in full: the
    controller that was refusing 99.9 % refuses nothing."""
    backend = GatedBackend()
    pattern, clock = shedder(backend)
    tasks = await overload(pattern, backend)
    for _ in range(10):
        tick(pattern, clock)
    assert pattern.controller.output == MAX_PRESSURE
    backend.release()
    await asyncio.gather(*tasks)
    tick(pattern, clock)  # still reports the waits of the drained queue
    clock.advance(10.0)
    pattern.tick(clock.now())
    assert pattern.shed_fraction == 0.0


async def ticks_to_recover(overload_ticks: int) -> int:
    backend = GatedBackend()
    pattern, clock = shedder(backend)
    tasks = await overload(pattern, backend)
    for _ in range(overload_ticks):
        tick(pattern, clock)
    assert pattern.controller.output == MAX_PRESSURE
    backend.release()
    await asyncio.gather(*tasks)
    recovered = 0
    while tick(pattern, clock) > 0:
        recovered += 1
    return recovered


async def test_no_windup_after_a_long_overload() -> None:
    """After a minute of saturated overload the threshold falls back as fast as after one
    second of it: the integral holds no more than the output's range."""
    short, long = await ticks_to_recover(10), await ticks_to_recover(600)
    assert short == long
    assert long <= MAX_PRESSURE / (KI * CONTROL_INTERVAL) + 1


def test_cohorts_to_shed_takes_the_least_urgent_first() -> None:
    """With the issue's mix, 20 % sheds all batch; 50 % all batch and 3/7 of standard;
    everything leaves critical one cohort."""
    shares = [0.1, 0.7, 0.2]
    assert cohorts_to_shed(0.0, shares) == [0, 0, 0]
    assert cohorts_to_shed(0.1, shares) == [0, 0, COHORTS // 2]
    assert cohorts_to_shed(0.2, shares) == [0, 0, COHORTS]
    assert cohorts_to_shed(0.5, shares) == [0, 55, COHORTS]
    assert cohorts_to_shed(1.0, shares) == [COHORTS - 1, COHORTS, COHORTS]
    assert cohorts_to_shed(0.1, [0.9, 0.1, 0.0]) == [0, COHORTS, COHORTS]


def test_cohort_order_spreads_refusals_evenly() -> None:
    """Shedding a quarter of the cohorts refuses every fourth arrival, not a run of them."""
    assert sorted(COHORT_ORDER) == list(range(COHORTS))
    refused = [i for i in range(16) if COHORT_ORDER[i] < COHORTS // 4]
    assert refused == [0, 4, 8, 12]


async def run_rounds(
    pattern: ShedderPattern, backend: GatedBackend, clock: ManualLoopClock, rtt: float, rounds: int
) -> list[int]:
    """Rounds of limit + 1 requests (one always queued) taking `rtt` each; the limit after each."""
    limits = []
    for round_ in range(rounds):
        backend.gate = asyncio.Event()
        count = pattern.limit + 1
        tasks = [asyncio.create_task(pattern.submit(query(f"R{round_}-{i}"))) for i in range(count)]
        await backend.wait_active(pattern.limit)
        clock.advance(rtt)
        backend.release()
        await asyncio.gather(*tasks)
        pattern.tick(clock.now())
        limits.append(pattern.limit)
    return limits


async def test_limit_grows_on_flat_latency_and_shrinks_when_it_inflates() -> None:
    """The in-flight limit rises while service time stays flat, falls when it triples, and
    stays within [--shed-min-limit, --shed-max-limit]."""
    backend = GatedBackend()
    pattern, clock = shedder(backend, limit=4, target=5.0, shed_min_limit=3, shed_max_limit=12)
    grown = await run_rounds(pattern, backend, clock, 0.05, 120)
    assert grown[-1] == 12
    assert max(grown) == 12
    shrunk = await run_rounds(pattern, backend, clock, 0.5, 60)
    assert shrunk[-1] < 12
    assert min(shrunk) >= 3
    assert pattern.stats()["service_p90_ms"] == pytest.approx(500.0)
    assert pattern.stats()["baseline_p90_ms"] == pytest.approx(50.0)


class SteppingBackend(GatedBackend):
    """Answers after a random number of loop turns; fails the ids it is told to."""

    name = "stepping"

    def __init__(self, rng: random.Random) -> None:
        super().__init__(open_gate=True)
        self.rng = rng

    async def get_patient(self, patient_id: str, deadline: float | None = None) -> Patient:
        self.calls.append(patient_id)
        self.active += 1
        self.peak_active = max(self.peak_active, self.active)
        try:
            for _ in range(self.rng.randint(1, 30)):
                await asyncio.sleep(0)
        finally:
            self.active -= 1
        if patient_id in self.fail_ids:
            raise BackendError(f"injected failure for {patient_id}")
        return synthetic_patient(patient_id)


async def test_every_request_is_answered_exactly_once() -> None:
    """Under random load, deadlines, disconnects, backend errors and controller ticks, every
    request gets one outcome, each outcome is counted where it should be, nothing runs twice
    or after being refused, and no slot leaks."""
    rng = random.Random(2026)
    backend = SteppingBackend(rng)
    pattern, clock = shedder(backend, limit=3, queue_size=8, target=0.05, shed_max_limit=4)
    loop = asyncio.get_running_loop()
    queries: dict[str, Query] = {}

    async def client(patient_id: str) -> Answer:
        timeout = rng.choice([5.0, 5.0, 5.0, rng.uniform(0.001, 0.01)])
        built = Query(patient_id, loop.time() + timeout, patient_id, rng.choice(MIX))
        queries[patient_id] = built
        return await pattern.submit(built)

    tasks: dict[str, Awaitable[Answer]] = {}
    for i in range(600):
        patient_id = f"P{i}"
        if rng.random() < 0.05:
            backend.fail_ids.add(patient_id)
        tasks[patient_id] = asyncio.ensure_future(client(patient_id))
        for _ in range(rng.randint(0, 6)):
            await asyncio.sleep(0)
        if rng.random() < 0.05 and patient_id in queries:
            queries[patient_id].client_gone = True
        if rng.random() < 0.1:
            clock.advance(rng.choice([0.01, 0.05, CONTROL_INTERVAL]))
            pattern.tick(clock.now())
    results = await asyncio.gather(*tasks.values(), return_exceptions=True)
    outcome = {pid: type(result).__name__ for pid, result in zip(tasks, results, strict=True)}
    counts = Counter(outcome.values())
    stats = pattern.stats()
    called = Counter(backend.calls)
    assert set(counts) <= {"Patient", "BackendError", "DeadlineExceeded", "Rejected", "ClientGone"}
    assert counts["Patient"] > 100 and counts["Rejected"] > 50, counts
    queue_refusals = stats["rejected_queue_full"] + stats["shed_for_priority"]
    assert min(stats["shed_by_threshold"], queue_refusals) > 0, stats
    assert max(called.values()) == 1, "a request reached the backend twice"
    for pid, kind in outcome.items():
        ran = pid in called
        assert ran == (kind in {"Patient", "BackendError"} or (kind == "DeadlineExceeded" and ran))
        if kind in {"Rejected", "ClientGone"}:
            assert not ran, pid
    refused = stats["shed_by_threshold"] + stats["rejected_queue_full"] + stats["shed_for_priority"]
    assert refused == counts["Rejected"]
    assert stats["skipped_client_gone"] == counts["ClientGone"]
    expired_queued = sum(
        1 for p, k in outcome.items() if k == "DeadlineExceeded" and p not in called
    )
    assert stats["expired_in_queue"] == expired_queued
    assert sum(stats["shed_by_class"].values()) == stats["shed_by_threshold"]
    assert stats["in_flight"] == 0 and stats["queued"] == 0
    assert backend.peak_active <= stats["peak_in_flight"] <= 4


async def test_shutdown_refuses_what_is_still_queued() -> None:
    """A shutdown whose drain times out answers each queued request Rejected, once."""
    backend = GatedBackend()
    pattern, _ = shedder(backend)
    tasks = await overload(pattern, backend, count=3)
    await pattern.shutdown(drain_timeout=0.01)
    backend.release()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert [type(r).__name__ for r in results] == ["Patient"] * 2 + ["Rejected"] * 3
    assert pattern.stats()["in_flight"] == 0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"shed_target_delay": 0.0}, "--shed-target-delay"),
        ({"shed_min_limit": 0}, "--shed-min-limit"),
        ({"shed_min_limit": 50, "shed_max_limit": 10}, "--shed-max-limit"),
    ],
)
def test_bad_settings_are_refused(overrides: dict[str, float], message: str) -> None:
    """Each shedder setting is checked and the error names the flag."""
    with pytest.raises(ConfigError, match=message):
        PatternConfig(**overrides)  # type: ignore[arg-type]


@pytest.mark.slow
async def test_real_server_sheds_batch_first_and_exports_it() -> None:
    """`serve --pattern shedder` behind a slow query: once a request has queued for longer
    than the target, a batch request that would queue is refused (503 + Retry-After) while
    the queued ones are answered, and /metrics (JSON and Prometheus) shows the shedding."""
    slow = ["--db-profile", "ideal", "--min-latency", "1000", "--max-latency", "1000"]
    pinned = ["--limit", "1", "--shed-min-limit", "1", "--shed-max-limit", "1"]
    args = ["--pattern", "shedder", "--error-rate", "0", "--quiet", *slow, *pinned]
    with ServerProcess(args) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            first = [asyncio.create_task(client.get(f"/api/v1/patients?id=P{i}")) for i in range(2)]
            await asyncio.sleep(0.5)  # P1 has now queued 25x the 20 ms target
            batch = await client.get(
                "/api/v1/patients?id=B1", headers={"X-Request-Priority": "batch"}
            )
            answered = await asyncio.gather(*first)
            metrics = (await client.get("/metrics")).json()
            prometheus = (await client.get("/metrics?format=prometheus")).text
    assert [response.status_code for response in answered] == [200, 200]
    assert batch.status_code == 503
    assert int(batch.headers["retry-after"]) >= 1
    assert "shedding batch" in batch.json()["error"]
    state = metrics["pattern_state"]
    assert state["name"] == "shedder"
    assert state["shed_by_class"] == {"critical": 0, "standard": 0, "batch": 1}
    assert state["shed_by_threshold"] == metrics["rejected_requests"] == 1
    assert state["shed_fraction"] > 0.5
    assert state["shedding_by_class"]["batch"] == 1.0
    samples = {
        sample.name: sample.value
        for family in text_string_to_metric_families(prometheus)
        for sample in family.samples
        if sample.labels.get("pattern") == "shedder"
    }
    assert samples["carebench_shed_by_threshold_total"] == 1
    assert samples["carebench_shed_fraction"] == pytest.approx(state["shed_fraction"])
    assert samples["carebench_target_delay_seconds"] == pytest.approx(0.02)
    assert samples["carebench_concurrency_limit"] == 1
