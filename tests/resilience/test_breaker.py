"""CircuitBreaker on a hand-driven clock, BreakerBackend around a GatedBackend, and wrap_backend."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from carebench.backends.records import synthetic_patient
from carebench.errors import BackendError, ConfigError, Rejected
from carebench.loop_clock import ManualLoopClock
from carebench.resilience.breaker import BreakerBackend, CircuitBreaker
from carebench.resilience.config import ResilienceConfig, wrap_backend
from carebench.resilience.retry import RetryingBackend
from tests.fakes import GatedBackend

THRESHOLD = 3
RESET = 5.0


@pytest.fixture
def loop_clock() -> ManualLoopClock:
    return ManualLoopClock()


@pytest.fixture
def breaker(loop_clock: ManualLoopClock) -> CircuitBreaker:
    return CircuitBreaker(threshold=THRESHOLD, reset_after=RESET, loop_clock=loop_clock)


def trip(breaker: CircuitBreaker) -> None:
    """Record `threshold` consecutive failures, opening a closed breaker."""
    for _ in range(breaker.threshold):
        assert breaker.admit() == "call"
        breaker.record_failure("call")
    assert breaker.state == "open"


def half_open(breaker: CircuitBreaker, loop_clock: ManualLoopClock) -> None:
    """Open the breaker, wait out the cool-down and take the single probe ticket."""
    trip(breaker)
    loop_clock.advance(breaker.reset_after)
    assert breaker.admit() == "probe"
    assert breaker.state == "half_open"


def test_stays_closed_below_the_threshold(breaker: CircuitBreaker) -> None:
    """threshold - 1 consecutive failures leave the breaker closed and admitting calls."""
    for _ in range(THRESHOLD - 1):
        assert breaker.admit() == "call"
        breaker.record_failure("call")
    assert breaker.state == "closed"
    assert breaker.admit() == "call"
    assert breaker.stats()["consecutive_failures"] == THRESHOLD - 1


def test_opens_after_threshold_consecutive_failures(breaker: CircuitBreaker) -> None:
    """The threshold-th consecutive failure opens the breaker; it then refuses calls."""
    trip(breaker)
    assert breaker.admit() is None
    assert breaker.transitions == {"closed->open": 1}


def test_a_success_resets_the_failure_count(breaker: CircuitBreaker) -> None:
    """A success between failures starts the count again: only an unbroken run opens it."""
    for _ in range(THRESHOLD - 1):
        breaker.record_failure("call")
    breaker.record_success("call")
    for _ in range(THRESHOLD - 1):
        breaker.record_failure("call")
    assert breaker.state == "closed"
    breaker.record_failure("call")
    assert breaker.state == "open"


def test_open_breaker_fails_fast_and_counts_it(breaker: CircuitBreaker) -> None:
    """While open, every admit() is None and is counted as a fast failure."""
    trip(breaker)
    assert [breaker.admit() for _ in range(4)] == [None] * 4
    assert breaker.fast_failures == 4
    assert breaker.stats()["fast_failures"] == 4


def test_retry_after_counts_down_with_the_clock(
    breaker: CircuitBreaker, loop_clock: ManualLoopClock
) -> None:
    """retry_after is the time left of the cool-down: reset_after at opening, then less."""
    trip(breaker)
    assert breaker.retry_after() == pytest.approx(RESET)
    loop_clock.advance(2.0)
    assert breaker.retry_after() == pytest.approx(3.0)
    loop_clock.advance(2.5)
    assert breaker.retry_after() == pytest.approx(0.5)
    loop_clock.advance(10.0)
    assert breaker.retry_after() == 0.0


def test_stays_open_until_reset_after_has_passed(
    breaker: CircuitBreaker, loop_clock: ManualLoopClock
) -> None:
    """Just before reset_after the breaker still refuses; at reset_after it hands out a probe."""
    trip(breaker)
    loop_clock.advance(RESET - 0.001)
    assert breaker.admit() is None
    assert breaker.state == "open"
    loop_clock.advance(0.001)
    assert breaker.admit() == "probe"
    assert breaker.state == "half_open"


def test_half_open_admits_exactly_one_probe(
    breaker: CircuitBreaker, loop_clock: ManualLoopClock
) -> None:
    """After the cool-down one caller probes; concurrent callers are refused until it settles."""
    half_open(breaker, loop_clock)
    assert [breaker.admit() for _ in range(3)] == [None] * 3
    assert breaker.state == "half_open"
    assert breaker.fast_failures == 3


def test_probe_success_closes(breaker: CircuitBreaker, loop_clock: ManualLoopClock) -> None:
    """A successful probe closes the breaker with a clean failure count."""
    half_open(breaker, loop_clock)
    breaker.record_success("probe")
    assert breaker.state == "closed"
    assert [breaker.admit() for _ in range(5)] == ["call"] * 5
    assert breaker.stats()["consecutive_failures"] == 0


def test_probe_failure_reopens_with_a_fresh_cool_down(
    breaker: CircuitBreaker, loop_clock: ManualLoopClock
) -> None:
    """A failed probe reopens at once, and the next probe waits a full reset_after from then."""
    trip(breaker)
    loop_clock.advance(RESET + 3.0)
    assert breaker.admit() == "probe"
    breaker.record_failure("probe")
    assert breaker.state == "open"
    assert breaker.retry_after() == pytest.approx(RESET)
    loop_clock.advance(RESET - 0.1)
    assert breaker.admit() is None
    loop_clock.advance(0.1)
    assert breaker.admit() == "probe"


def test_released_probe_lets_the_next_caller_probe(
    breaker: CircuitBreaker, loop_clock: ManualLoopClock
) -> None:
    """A probe released without a verdict stays half-open and frees the single probe slot."""
    half_open(breaker, loop_clock)
    breaker.release("probe")
    assert breaker.state == "half_open"
    assert breaker.admit() == "probe"
    assert breaker.admit() is None


def test_transitions_are_counted(breaker: CircuitBreaker, loop_clock: ManualLoopClock) -> None:
    """Every state change is counted under "from->to", and stats() reports the counts."""
    half_open(breaker, loop_clock)
    breaker.record_failure("probe")
    loop_clock.advance(RESET)
    assert breaker.admit() == "probe"
    breaker.record_success("probe")
    expected = {
        "closed->open": 1,
        "open->half_open": 2,
        "half_open->open": 1,
        "half_open->closed": 1,
    }
    assert breaker.transitions == expected
    assert breaker.stats()["transitions"] == expected
    assert breaker.stats()["state"] == "closed"


def test_stats_report_the_settings(breaker: CircuitBreaker) -> None:
    """stats() names the threshold and the cool-down alongside the live state."""
    stats = breaker.stats()
    assert stats["threshold"] == THRESHOLD
    assert stats["reset_after_seconds"] == RESET
    assert stats["state"] == "closed"


def test_late_success_of_a_closed_call_does_not_close_an_open_circuit(
    breaker: CircuitBreaker,
) -> None:
    """A call admitted while closed that succeeds after the circuit opened leaves it open."""
    assert breaker.admit() == "call"  # the slow call, still in the backend
    trip(breaker)
    breaker.record_success("call")
    assert breaker.state == "open"
    assert breaker.admit() is None
    assert breaker.stats()["consecutive_failures"] == THRESHOLD
    assert breaker.transitions == {"closed->open": 1}


def test_late_failure_while_open_does_not_restart_the_cool_down(
    breaker: CircuitBreaker, loop_clock: ManualLoopClock
) -> None:
    """A late failure of a closed call while open is ignored: the cool-down is not restarted."""
    assert breaker.admit() == "call"
    trip(breaker)
    loop_clock.advance(2.0)
    breaker.record_failure("call")
    assert breaker.retry_after() == pytest.approx(RESET - 2.0)
    loop_clock.advance(RESET - 2.0)
    assert breaker.admit() == "probe"


def test_late_success_of_a_closed_call_while_half_open_does_not_close(
    breaker: CircuitBreaker, loop_clock: ManualLoopClock
) -> None:
    """A late success of a closed call while half-open neither closes nor frees the probe slot."""
    assert breaker.admit() == "call"
    half_open(breaker, loop_clock)
    breaker.record_success("call")
    assert breaker.state == "half_open"
    assert breaker.admit() is None
    assert "half_open->closed" not in breaker.transitions


def test_late_failure_while_half_open_does_not_reopen_or_free_the_probe(
    breaker: CircuitBreaker, loop_clock: ManualLoopClock
) -> None:
    """A late failure of a closed call while half-open neither reopens nor frees the probe slot."""
    assert breaker.admit() == "call"
    half_open(breaker, loop_clock)
    breaker.record_failure("call")
    assert breaker.state == "half_open"
    assert breaker.admit() is None
    assert "half_open->open" not in breaker.transitions
    breaker.record_success("probe")
    assert breaker.state == "closed"


def test_releasing_a_closed_call_while_half_open_keeps_the_probe_slot(
    breaker: CircuitBreaker, loop_clock: ManualLoopClock
) -> None:
    """Releasing a call admitted before the circuit opened does not free the probe slot."""
    assert breaker.admit() == "call"
    half_open(breaker, loop_clock)
    breaker.release("call")
    assert breaker.admit() is None
    assert breaker.state == "half_open"


def test_release_while_closed_leaves_the_failure_count(breaker: CircuitBreaker) -> None:
    """A closed call released without a verdict neither adds a failure nor clears the count."""
    breaker.record_failure("call")
    assert breaker.admit() == "call"
    breaker.release("call")
    assert breaker.state == "closed"
    assert breaker.stats()["consecutive_failures"] == 1


@pytest.fixture
def gated() -> GatedBackend:
    backend = GatedBackend(open_gate=True)
    backend.fail_ids.add("BAD")
    return backend


@pytest.fixture
def guarded(
    gated: GatedBackend, breaker: CircuitBreaker, loop_clock: ManualLoopClock
) -> BreakerBackend:
    return BreakerBackend(gated, breaker, loop_clock)


async def open_circuit(guarded: BreakerBackend) -> None:
    """Fail `threshold` calls through the wrapper so its breaker opens."""
    for _ in range(guarded.breaker.threshold):
        with pytest.raises(BackendError):
            await guarded.get_patient("BAD")
    assert guarded.breaker.state == "open"


async def cancel(task: asyncio.Task[Any]) -> None:
    """Cancel `task` and wait until the cancellation has run through it."""
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_backend_errors_are_recorded_and_reraised(
    guarded: BreakerBackend, gated: GatedBackend
) -> None:
    """A BackendError from the backend reaches the caller and counts as a breaker failure;
    a success clears the count."""
    with pytest.raises(BackendError, match="injected failure for BAD"):
        await guarded.get_patient("BAD")
    assert guarded.breaker.stats()["consecutive_failures"] == 1
    assert await guarded.get_patient("P1") == synthetic_patient("P1")
    assert guarded.breaker.stats()["consecutive_failures"] == 0
    assert gated.calls == ["BAD", "P1"]


async def test_open_circuit_rejects_without_calling_the_backend(
    guarded: BreakerBackend, gated: GatedBackend, loop_clock: ManualLoopClock
) -> None:
    """An open circuit is Rejected with Retry-After >= 1 (whole seconds left) and the backend
    never sees the call."""
    await open_circuit(guarded)
    with pytest.raises(Rejected) as rejected:
        await guarded.get_patient("P1")
    assert rejected.value.retry_after == 5
    loop_clock.advance(RESET - 0.2)
    with pytest.raises(Rejected) as rejected:
        await guarded.get_patient("P2")
    assert rejected.value.retry_after == 1
    assert gated.calls == ["BAD"] * THRESHOLD
    assert guarded.breaker.fast_failures == 2


async def test_probe_through_the_wrapper_closes_the_circuit(
    guarded: BreakerBackend, gated: GatedBackend, loop_clock: ManualLoopClock
) -> None:
    """After the cool-down the next call reaches the backend; its success closes the circuit."""
    await open_circuit(guarded)
    loop_clock.advance(RESET)
    assert await guarded.get_patient("P1") == synthetic_patient("P1")
    assert guarded.breaker.state == "closed"
    assert gated.calls[-1] == "P1"


async def test_only_one_probe_reaches_the_backend(
    guarded: BreakerBackend, gated: GatedBackend, loop_clock: ManualLoopClock
) -> None:
    """While the half-open probe is in the backend, other calls are Rejected without a call."""
    await open_circuit(guarded)
    loop_clock.advance(RESET)
    gated.gate.clear()
    probe = asyncio.create_task(guarded.get_patient("PROBE"))
    await gated.wait_active(1)
    with pytest.raises(Rejected) as rejected:
        await guarded.get_patient("OTHER")
    assert rejected.value.retry_after >= 1
    gated.release()
    assert await probe == synthetic_patient("PROBE")
    assert "OTHER" not in gated.calls
    assert guarded.breaker.state == "closed"


async def test_cancelled_probe_lets_another_probe_through(
    guarded: BreakerBackend, gated: GatedBackend, loop_clock: ManualLoopClock
) -> None:
    """A probe cancelled inside the backend gives no verdict: the next caller may probe."""
    await open_circuit(guarded)
    loop_clock.advance(RESET)
    gated.gate.clear()
    probe = asyncio.create_task(guarded.get_patient("PROBE"))
    await gated.wait_active(1)
    await cancel(probe)
    assert guarded.breaker.state == "half_open"
    gated.release()
    assert await guarded.get_patient("NEXT") == synthetic_patient("NEXT")
    assert guarded.breaker.state == "closed"
    assert gated.calls[-2:] == ["PROBE", "NEXT"]


async def test_late_success_through_the_wrapper_does_not_close_the_circuit(
    guarded: BreakerBackend, gated: GatedBackend, breaker: CircuitBreaker
) -> None:
    """A slow closed call still returns its record after the circuit opened, but leaves it open."""
    gated.gate.clear()
    slow = asyncio.create_task(guarded.get_patient("SLOW"))
    await gated.wait_active(1)
    trip(breaker)
    gated.release()
    assert await slow == synthetic_patient("SLOW")
    assert breaker.state == "open"
    assert breaker.transitions == {"closed->open": 1}
    with pytest.raises(Rejected):
        await guarded.get_patient("AFTER")
    assert "AFTER" not in gated.calls


async def test_cancelling_a_closed_call_does_not_let_a_second_probe_through(
    guarded: BreakerBackend,
    gated: GatedBackend,
    breaker: CircuitBreaker,
    loop_clock: ManualLoopClock,
) -> None:
    """Cancelling a closed call during the probe keeps the slot: the next caller is Rejected."""
    gated.gate.clear()
    slow = asyncio.create_task(guarded.get_patient("SLOW"))
    await gated.wait_active(1)
    trip(breaker)
    loop_clock.advance(RESET)
    probe = asyncio.create_task(guarded.get_patient("PROBE"))
    await gated.wait_active(2)
    await cancel(slow)
    with pytest.raises(Rejected):
        async with asyncio.timeout(1.0):  # a wrongly admitted second probe would hang
            await guarded.get_patient("SECOND")
    assert gated.calls == ["SLOW", "PROBE"]
    gated.release()
    assert await probe == synthetic_patient("PROBE")
    assert breaker.state == "closed"


async def test_call_cancelled_at_its_deadline_is_a_failure(
    guarded: BreakerBackend,
    gated: GatedBackend,
    breaker: CircuitBreaker,
    loop_clock: ManualLoopClock,
) -> None:
    """A call cancelled at its deadline is a failure; one cancelled just before gives no verdict."""
    gated.gate.clear()
    early = asyncio.create_task(guarded.get_patient("EARLY", loop_clock.now() + 1.0))
    await gated.wait_active(1)
    loop_clock.advance(0.99)
    await cancel(early)
    assert breaker.stats()["consecutive_failures"] == 0
    on_time = asyncio.create_task(guarded.get_patient("ON_TIME", loop_clock.now() + 1.0))
    await gated.wait_active(1)
    loop_clock.advance(1.0)
    await cancel(on_time)
    assert breaker.stats()["consecutive_failures"] == 1


async def test_probe_cancelled_at_its_deadline_reopens_the_circuit(
    guarded: BreakerBackend,
    gated: GatedBackend,
    breaker: CircuitBreaker,
    loop_clock: ManualLoopClock,
) -> None:
    """A probe still hanging at its deadline is a failed probe: the circuit reopens."""
    trip(breaker)
    loop_clock.advance(RESET)
    gated.gate.clear()
    probe = asyncio.create_task(guarded.get_patient("PROBE", loop_clock.now() + 1.0))
    await gated.wait_active(1)
    loop_clock.advance(1.0)
    await cancel(probe)
    assert breaker.state == "open"
    assert breaker.transitions["half_open->open"] == 1


async def test_hanging_backend_opens_the_circuit_at_the_deadlines() -> None:
    """Two hanging calls cut off by timeout_at at their deadline open a threshold-2 circuit."""
    hanging = GatedBackend()
    breaker = CircuitBreaker(threshold=2, reset_after=3600.0)
    guarded = BreakerBackend(hanging, breaker)
    loop = asyncio.get_running_loop()
    for patient_id in ("P1", "P2"):
        deadline = loop.time() + 0.02
        with pytest.raises(TimeoutError):
            async with asyncio.timeout_at(deadline):
                await guarded.get_patient(patient_id, deadline)
    assert breaker.state == "open"
    assert breaker.transitions == {"closed->open": 1}
    with pytest.raises(Rejected):
        await guarded.get_patient("P3", loop.time() + 0.02)
    assert hanging.calls == ["P1", "P2"]


async def test_calls_cancelled_before_their_deadline_do_not_count() -> None:
    """Hanging calls cut off well before their own deadline give no verdict: no failure counts."""
    hanging = GatedBackend()
    breaker = CircuitBreaker(threshold=2, reset_after=3600.0)
    guarded = BreakerBackend(hanging, breaker)
    loop = asyncio.get_running_loop()
    for patient_id in ("P1", "P2", "P3"):
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.02):
                await guarded.get_patient(patient_id, loop.time() + 3600.0)
    assert breaker.state == "closed"
    assert breaker.stats()["consecutive_failures"] == 0
    assert hanging.calls == ["P1", "P2", "P3"]


async def test_health_is_degraded_unless_closed(
    guarded: BreakerBackend, loop_clock: ManualLoopClock
) -> None:
    """health() keeps the backend's report, adds the breaker state, and says degraded while
    the circuit is open or half-open."""
    assert guarded.health()["status"] == "healthy"
    assert guarded.health()["circuit_breaker"] == "closed"
    await open_circuit(guarded)
    assert guarded.health()["status"] == "degraded"
    assert guarded.health()["circuit_breaker"] == "open"
    assert guarded.health()["backend"] == "gated"
    loop_clock.advance(RESET)
    assert guarded.breaker.admit() == "probe"
    assert guarded.health()["status"] == "degraded"
    guarded.breaker.record_success("probe")
    assert guarded.health()["status"] == "healthy"


async def test_stats_nest_the_breaker_under_the_backend_stats(guarded: BreakerBackend) -> None:
    """stats() is the backend's stats plus a circuit_breaker section."""
    await open_circuit(guarded)
    stats = guarded.stats()
    assert stats["backend"] == "gated"
    assert stats["total_queries"] == THRESHOLD
    assert stats["circuit_breaker"]["state"] == "open"


async def test_wrapper_keeps_name_and_closes_the_backend(
    guarded: BreakerBackend, gated: GatedBackend
) -> None:
    """The wrapper has the backend's name, and close() reaches the backend."""
    gated.gate.clear()
    assert guarded.name == "gated"
    await guarded.close()
    assert gated.gate.is_set()


class RecordingSleep:
    """An async sleep that advances the ManualLoopClock by the requested time instead of waiting."""

    def __init__(self, loop_clock: ManualLoopClock) -> None:
        self.loop_clock = loop_clock
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.loop_clock.advance(seconds)


async def test_wrap_backend_retries_outside_the_breaker(
    gated: GatedBackend, loop_clock: ManualLoopClock
) -> None:
    """wrap_backend builds retries(breaker(backend)): once the failure opens the circuit, the
    retry is Rejected by the breaker, is not retried again, and the backend is called once."""
    sleep = RecordingSleep(loop_clock)
    config = ResilienceConfig(retries=3, circuit_breaker=True, breaker_threshold=1)
    backend = wrap_backend(gated, config, loop_clock, sleep)
    assert isinstance(backend, RetryingBackend)
    with pytest.raises(Rejected):
        await backend.get_patient("BAD")
    assert gated.calls == ["BAD"]
    assert len(sleep.waits) == 1
    stats = backend.stats()
    assert stats["retries"] == {"max": 3, "retried": 1, "gave_up": 0}
    assert stats["circuit_breaker"]["state"] == "open"
    assert stats["circuit_breaker"]["fast_failures"] == 1


async def test_wrap_backend_drives_the_breaker_with_the_given_clock(
    gated: GatedBackend, loop_clock: ManualLoopClock
) -> None:
    """The clock given to wrap_backend times the cool-down: advancing it lets the probe through."""
    config = ResilienceConfig(circuit_breaker=True, breaker_threshold=1, breaker_reset=2.0)
    backend = wrap_backend(gated, config, loop_clock)
    assert isinstance(backend, BreakerBackend)
    with pytest.raises(BackendError):
        await backend.get_patient("BAD")
    with pytest.raises(Rejected):
        await backend.get_patient("EARLY")
    loop_clock.advance(2.0)
    assert await backend.get_patient("P1") == synthetic_patient("P1")
    assert backend.breaker.state == "closed"
    assert gated.calls == ["BAD", "P1"]


def test_wrap_backend_adds_only_what_is_configured(gated: GatedBackend) -> None:
    """No resilience options leave the backend bare; each option adds just its own wrapper."""
    assert wrap_backend(gated, ResilienceConfig()) is gated
    assert isinstance(wrap_backend(gated, ResilienceConfig(retries=2)), RetryingBackend)
    breaker_only = wrap_backend(gated, ResilienceConfig(circuit_breaker=True, breaker_reset=2.5))
    assert isinstance(breaker_only, BreakerBackend)
    assert breaker_only.breaker.threshold == 5
    assert breaker_only.breaker.reset_after == 2.5


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"retries": -1}, r"--retries \(-1\) must be >= 0"),
        ({"breaker_threshold": 0}, r"--breaker-threshold \(0\) must be >= 1"),
        ({"breaker_reset": 0.0}, r"--breaker-reset \(0\) must be > 0 seconds"),
        ({"breaker_reset": -1.5}, r"--breaker-reset \(-1.5\) must be > 0 seconds"),
    ],
)
def test_resilience_config_errors_name_their_flags(options: dict[str, Any], message: str) -> None:
    """An invalid resilience setting is a ConfigError naming the flag, the value and the rule."""
    with pytest.raises(ConfigError, match=message):
        ResilienceConfig(**options)
