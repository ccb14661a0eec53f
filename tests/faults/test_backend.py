"""FaultyBackend on a hand-driven clock: each fault does what it says, only inside its window,
timed from start(); and the setting builds it into the server's backend chain."""

from __future__ import annotations

import asyncio
import random

import pytest
from prometheus_client.parser import text_string_to_metric_families

from carebench.backends.base import BackendHealth, BackendStats
from carebench.backends.records import synthetic_patient
from carebench.backends.simulator import SimulatedBackend, SimulatorConfig
from carebench.errors import BackendError, ConfigError, PatientNotFound
from carebench.faults.backend import DEADLINE_GRACE, FaultyBackend
from carebench.faults.config import FaultConfig, inject_faults
from carebench.faults.schedule import parse_schedule
from carebench.loop_clock import ManualLoopClock
from carebench.metrics.prometheus import CarebenchCollector, build_registry, render
from carebench.metrics.requests import RequestMetrics
from carebench.models import Patient
from carebench.resilience.breaker import BreakerBackend
from carebench.resilience.config import ResilienceConfig
from carebench.resilience.retry import RetryingBackend
from carebench.server.setup import ServerSetup
from tests.fakes import PatientLookups
from tests.metrics.test_prometheus import IDLE_PATTERN

SCHEDULE = "at 1s outage for 1s; at 3s slow x5 for 1s; at 5s errors 50% for 1s"
START = 1000.0


class TimedBackend(PatientLookups):
    """Each query takes `duration` seconds of the manual clock; some ids fail."""

    name = "timed"

    def __init__(self, clock: ManualLoopClock, duration: float = 0.02) -> None:
        self.clock = clock
        self.duration = duration
        self.calls = 0
        self.started = False
        self.closed = False

    async def get_patient(self, patient_id: str, deadline: float | None = None) -> Patient:
        self.calls += 1
        self.clock.advance(self.duration)
        if patient_id == "broken":
            raise BackendError("the database's own error")
        if patient_id == "missing":
            raise PatientNotFound(patient_id)
        return synthetic_patient(patient_id)

    def health(self) -> BackendHealth:
        return {"status": "healthy", "backend": self.name, "total_queries": 0, "total_errors": 0}

    def stats(self) -> BackendStats:
        return {"backend": self.name, "total_queries": self.calls, "total_errors": 0}

    async def start(self) -> None:
        self.started = True

    async def close(self) -> None:
        self.closed = True


class Sleeps:
    """Stands in for asyncio.sleep: records each pause and moves the manual clock by it."""

    def __init__(self, clock: ManualLoopClock) -> None:
        self.clock = clock
        self.pauses: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.clock.advance(seconds)


@pytest.fixture
def clock() -> ManualLoopClock:
    return ManualLoopClock(START)


@pytest.fixture
def inner(clock: ManualLoopClock) -> TimedBackend:
    return TimedBackend(clock)


@pytest.fixture
def sleeps(clock: ManualLoopClock) -> Sleeps:
    return Sleeps(clock)


@pytest.fixture
async def faulty(clock: ManualLoopClock, inner: TimedBackend, sleeps: Sleeps) -> FaultyBackend:
    backend = FaultyBackend(inner, parse_schedule(SCHEDULE), clock, sleeps, random.Random(7))
    await backend.start()
    return backend


def at(clock: ManualLoopClock, elapsed: float) -> None:
    """Move the clock to `elapsed` seconds after the schedule started."""
    clock.advance(START + elapsed - clock.now())


async def test_the_schedule_is_timed_from_start(clock, inner, sleeps) -> None:
    """Before start() nothing is injected; after it, `at 1s` means 1 s after start()."""
    backend = FaultyBackend(inner, parse_schedule("at 1s outage"), clock, sleeps)
    clock.advance(5.0)
    assert backend.elapsed() is None
    assert await backend.get_patient("P1") == synthetic_patient("P1")

    await backend.start()
    assert inner.started and backend.elapsed() == 0.0
    assert await backend.get_patient("P2") == synthetic_patient("P2")
    clock.advance(1.0)
    with pytest.raises(BackendError):
        await backend.get_patient("P3")
    await backend.close()
    assert inner.closed


async def test_outside_the_windows_calls_pass_through_untouched(faulty, clock, inner, sleeps):
    for elapsed in (0.0, 0.999, 2.0, 4.0, 6.0, 100.0):
        at(clock, elapsed)
        assert await faulty.get_patient("P1") == synthetic_patient("P1")
    with pytest.raises(BackendError, match="the database's own error"):
        await faulty.get_patient("broken")
    assert inner.calls == 7
    assert sleeps.pauses == []
    assert faulty.injected == {"outage": 0, "slow": 0, "errors": 0}
    assert faulty.health()["status"] == "healthy"


async def test_an_outage_fails_every_call_at_once_without_reaching_the_database(
    faulty, clock, inner, sleeps
) -> None:
    at(clock, 1.0)
    for _ in range(3):
        with pytest.raises(BackendError, match=r"^database unreachable: injected outage"):
            await faulty.get_patient("P1")
    assert inner.calls == 0
    assert clock.now() == START + 1.0  # no time passed: a refused connection
    assert faulty.injected["outage"] == 3
    health = faulty.health()
    assert (health["status"], health["fault"]) == ("down", "outage")
    at(clock, 2.0)
    assert await faulty.get_patient("P1") == synthetic_patient("P1")
    assert faulty.health()["status"] == "healthy"


async def test_slow_makes_each_call_take_n_times_as_long(faulty, clock, inner, sleeps) -> None:
    """x5: the real call's 20 ms, then 4 x 20 ms more; failures are slowed the same way."""
    at(clock, 3.0)
    began = clock.now()
    assert await faulty.get_patient("P1") == synthetic_patient("P1")
    assert clock.now() - began == pytest.approx(5 * inner.duration)
    assert sleeps.pauses == [pytest.approx(4 * inner.duration)]
    with pytest.raises(BackendError, match="the database's own error"):
        await faulty.get_patient("broken")
    with pytest.raises(PatientNotFound):
        await faulty.get_patient("missing")
    assert sleeps.pauses == [pytest.approx(4 * inner.duration)] * 3
    assert faulty.injected["slow"] == 3
    health = faulty.health()
    assert (health["status"], health["fault"]) == ("degraded", "slow x5")


async def test_slow_never_sleeps_far_past_the_deadline(faulty, clock, inner, sleeps) -> None:
    """A call the slowdown would take past its deadline ends just after the deadline (where
    the caller's own cut-off ends it first) as a database error, never later."""
    inner.duration = 0.1
    at(clock, 3.0)
    deadline = clock.now() + 0.25  # the call would take 0.5 s
    with pytest.raises(BackendError, match=r"slow x5 \(--faults\) ran past its deadline"):
        await faulty.get_patient("P1", deadline)
    assert clock.now() == pytest.approx(deadline + DEADLINE_GRACE)
    # Within its deadline, the whole slowdown.
    roomy = clock.now() + 1.0
    began = clock.now()
    assert await faulty.get_patient("P1", roomy) == synthetic_patient("P1")
    assert clock.now() - began == pytest.approx(0.5)


async def test_slow_honours_cancellation(clock, inner) -> None:
    """The extra sleep is a real asyncio.sleep: cancelling the caller ends it at once."""
    inner.duration = 1.0  # x5: four more (real) seconds
    backend = FaultyBackend(inner, parse_schedule("at 0s slow x5"), clock)
    await backend.start()
    call = asyncio.ensure_future(backend.get_patient("P1"))
    await asyncio.sleep(0.01)
    assert not call.done()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(call, timeout=1.0)


async def test_errors_fail_that_share_of_calls_after_running_them(faulty, clock, inner) -> None:
    at(clock, 5.0)
    failed = 0
    for _ in range(1000):
        try:
            await faulty.get_patient("P1")
        except BackendError as error:
            assert "injected database error (--faults errors 50%)" in str(error)
            failed += 1
        clock.advance(-inner.duration)  # stay inside the 1 s window
    assert 430 <= failed <= 570
    assert inner.calls == 1000  # each query ran: only its answer was replaced
    assert faulty.injected["errors"] == failed
    assert faulty.health()["status"] == "degraded"


async def test_stats_show_the_schedule_the_fault_in_effect_and_the_counts(faulty, clock):
    at(clock, 1.5)
    with pytest.raises(BackendError):
        await faulty.get_patient("P1")
    stats = faulty.stats()

    assert stats["backend"] == "timed" and stats["total_queries"] == 0
    faults = stats["faults"]
    assert faults["elapsed_seconds"] == 1.5
    assert faults["active"] == {
        "kind": "outage", "label": "outage", "start_seconds": 1.0, "end_seconds": 2.0,
    }  # fmt: skip
    assert [w["label"] for w in faults["schedule"]] == ["outage", "slow x5", "errors 50%"]
    assert faults["injected"] == {"outage": 1, "slow": 0, "errors": 0}
    at(clock, 2.5)
    assert faulty.stats()["faults"]["active"] is None


async def test_prometheus_shows_which_fault_is_active(faulty, clock) -> None:
    at(clock, 3.2)
    collector = CarebenchCollector(RequestMetrics("naive"), lambda: IDLE_PATTERN, faulty.stats)
    text = render(build_registry(collector)).decode()
    samples = [s for family in text_string_to_metric_families(text) for s in family.samples]
    active = {s.labels["kind"]: s.value for s in samples if s.name == "carebench_fault_active"}

    assert active == {"outage": 0.0, "slow": 1.0, "errors": 0.0}
    injected = [s for s in samples if s.name == "carebench_faults_injected_total"]
    assert {s.labels["kind"] for s in injected} == {"outage", "slow", "errors"}


def test_no_schedule_leaves_the_backend_as_it_is() -> None:
    backend = SimulatedBackend()
    assert inject_faults(backend, FaultConfig()) is backend
    assert isinstance(inject_faults(backend, FaultConfig("at 1s outage")), FaultyBackend)


def test_the_server_chain_puts_faults_under_the_resilience_wrappers() -> None:
    """retries(breaker(faults(database))): the breaker and retries see injected faults as
    the database's own failures."""
    setup = ServerSetup(
        resilience=ResilienceConfig(retries=2, circuit_breaker=True),
        faults=FaultConfig("at 1s outage for 1s"),
    )
    chain = setup.build_backend()
    assert isinstance(chain, RetryingBackend)
    breaker = chain._inner
    assert isinstance(breaker, BreakerBackend)
    assert isinstance(breaker._inner, FaultyBackend)
    assert isinstance(breaker._inner._inner, SimulatedBackend)
    assert not isinstance(ServerSetup().build_backend(), FaultyBackend)


async def test_errors_are_reproducible_with_a_seed() -> None:
    """The errors P% draws follow --seed, like the simulator's own."""
    setup = ServerSetup(
        database=SimulatorConfig(0.0, 0.0, 0.0, seed=3),
        faults=FaultConfig("at 0s errors 50%"),
    )

    async def outcomes() -> list[bool]:
        backend = setup.build_backend()
        await backend.start()
        results = []
        for _ in range(50):
            try:
                await backend.get_patient("P1")
                results.append(True)
            except BackendError:
                results.append(False)
        return results

    assert await outcomes() == await outcomes()


@pytest.mark.parametrize("text", ["at 1s", "at 1s outage for 5s; at 2s slow x2"])
def test_a_bad_schedule_is_a_config_error_naming_the_flag(text: str) -> None:
    with pytest.raises(ConfigError, match=r"^--faults: "):
        FaultConfig(text)
