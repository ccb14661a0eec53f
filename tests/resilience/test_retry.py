"""RetryingBackend with a hand-driven clock and a recording sleep: counts, deadline, jitter."""

from __future__ import annotations

import random

import pytest

from carebench.backends.base import BackendHealth, BackendStats
from carebench.backends.records import synthetic_patient
from carebench.errors import BackendError, DeadlineExceeded, Rejected
from carebench.loop_clock import ManualLoopClock
from carebench.models import Patient
from carebench.resilience.retry import BACKOFF_BASE, BACKOFF_MAX, RetryingBackend
from tests.fakes import PatientLookups


class FlakyBackend(PatientLookups):
    """Fails the first `failures` calls with BackendError (or raises `error` every time)."""

    name = "flaky"

    def __init__(self, failures: int = 0, error: Exception | None = None) -> None:
        self.failures = failures
        self.error = error
        self.calls = 0
        self.closed = False

    async def get_patient(self, patient_id: str, deadline: float | None = None) -> Patient:
        self.calls += 1
        if self.error is not None:
            raise self.error
        if self.calls <= self.failures:
            raise BackendError(f"injected failure {self.calls}")
        return synthetic_patient(patient_id)

    def health(self) -> BackendHealth:
        return {"status": "healthy", "backend": self.name, "total_queries": 0, "total_errors": 0}

    def stats(self) -> BackendStats:
        return {"backend": self.name, "total_queries": self.calls, "total_errors": 0}

    async def start(self) -> None:
        """Nothing to open."""

    async def close(self) -> None:
        self.closed = True


class RecordingSleep:
    """An async sleep that advances the ManualLoopClock by the requested time instead of waiting."""

    def __init__(self, loop_clock: ManualLoopClock) -> None:
        self.loop_clock = loop_clock
        self.waits: list[float] = []
        self.ends: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.loop_clock.advance(seconds)
        self.ends.append(self.loop_clock.now())


ALWAYS = 1_000_000


def window(k: int) -> float:
    """The upper bound of the k-th wait (1-based): min(MAX, BASE x 2**(k-1))."""
    return min(BACKOFF_MAX, BACKOFF_BASE * 2.0 ** (k - 1))


@pytest.fixture
def loop_clock() -> ManualLoopClock:
    return ManualLoopClock()


@pytest.fixture
def sleep(loop_clock: ManualLoopClock) -> RecordingSleep:
    return RecordingSleep(loop_clock)


@pytest.fixture
def widest_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every jittered wait the top of its window, so the schedule is deterministic."""
    monkeypatch.setattr(random, "uniform", lambda low, high: high)


def retrying(
    inner: FlakyBackend, retries: int, loop_clock: ManualLoopClock, sleep: RecordingSleep
) -> RetryingBackend:
    return RetryingBackend(inner, retries, loop_clock=loop_clock, sleep=sleep)


@pytest.mark.parametrize("failures", [0, 1, 3])
async def test_succeeds_after_k_transient_failures(
    failures: int, loop_clock: ManualLoopClock, sleep: RecordingSleep
) -> None:
    """K failures then a success: the caller gets the record, after exactly K retries."""
    inner = FlakyBackend(failures)
    backend = retrying(inner, 3, loop_clock, sleep)
    assert await backend.get_patient("P1") == synthetic_patient("P1")
    assert inner.calls == failures + 1
    assert backend.retried == failures
    assert backend.gave_up == 0
    assert len(sleep.waits) == failures


@pytest.mark.parametrize("retries", [0, 1, 4])
async def test_gives_up_after_the_allowed_retries(
    retries: int, loop_clock: ManualLoopClock, sleep: RecordingSleep
) -> None:
    """A backend that keeps failing gets retries + 1 attempts; the last BackendError surfaces."""
    inner = FlakyBackend(ALWAYS)
    backend = retrying(inner, retries, loop_clock, sleep)
    with pytest.raises(BackendError, match=f"injected failure {retries + 1}"):
        await backend.get_patient("P1")
    assert inner.calls == retries + 1
    assert backend.retried == retries
    assert backend.gave_up == 1
    assert len(sleep.waits) == retries


async def test_counters_accumulate_across_calls(
    loop_clock: ManualLoopClock, sleep: RecordingSleep
) -> None:
    """retried and gave_up add up over several requests."""
    backend = retrying(FlakyBackend(ALWAYS), 2, loop_clock, sleep)
    for _ in range(3):
        with pytest.raises(BackendError):
            await backend.get_patient("P1")
    assert (backend.retried, backend.gave_up) == (6, 3)


@pytest.mark.usefixtures("widest_waits")
async def test_stops_before_a_wait_would_reach_the_deadline(
    loop_clock: ManualLoopClock, sleep: RecordingSleep
) -> None:
    """With 0.1 s left, waits of 25 ms and 50 ms fit; the next (100 ms) would end past the
    deadline, so the backend gives up instead of sleeping into it."""
    inner = FlakyBackend(ALWAYS)
    backend = retrying(inner, 50, loop_clock, sleep)
    start = loop_clock.now()
    with pytest.raises(BackendError):
        await backend.get_patient("P1", deadline=start + 0.1)
    assert sleep.waits == [0.025, 0.05]
    assert inner.calls == 3
    assert backend.gave_up == 1
    assert loop_clock.now() < start + 0.1


@pytest.mark.usefixtures("widest_waits")
async def test_a_wait_ending_exactly_at_the_deadline_is_not_taken(
    loop_clock: ManualLoopClock, sleep: RecordingSleep
) -> None:
    """A retry whose wait would end exactly at the deadline could not answer in time: give up."""
    inner = FlakyBackend(ALWAYS)
    backend = retrying(inner, 50, loop_clock, sleep)
    deadline = loop_clock.now() + window(1) + window(2)
    with pytest.raises(BackendError):
        await backend.get_patient("P1", deadline=deadline)
    assert sleep.waits == [window(1)]
    assert inner.calls == 2


async def test_no_retry_ever_crosses_the_deadline(
    loop_clock: ManualLoopClock, sleep: RecordingSleep
) -> None:
    """Whatever the jitter draws, every wait ends before the deadline and so does their sum."""
    backend = retrying(FlakyBackend(ALWAYS), 50, loop_clock, sleep)
    for _ in range(200):
        start = loop_clock.now()
        deadline = start + 0.1
        first_wait = len(sleep.waits)
        with pytest.raises(BackendError):
            await backend.get_patient("P1", deadline=deadline)
        assert all(end < deadline for end in sleep.ends[first_wait:])
        assert start + sum(sleep.waits[first_wait:]) < deadline
    assert backend.gave_up == 200
    assert backend.retried == len(sleep.waits) > 0


async def test_no_budget_left_means_no_retry(
    loop_clock: ManualLoopClock, sleep: RecordingSleep
) -> None:
    """A request already at its deadline is tried once and not retried."""
    inner = FlakyBackend(ALWAYS)
    backend = retrying(inner, 5, loop_clock, sleep)
    with pytest.raises(BackendError):
        await backend.get_patient("P1", deadline=loop_clock.now())
    assert inner.calls == 1
    assert sleep.waits == []


@pytest.mark.parametrize(
    "error",
    [Rejected("pool full", retry_after=2.0), DeadlineExceeded("late"), ValueError("bug")],
    ids=["rejected", "deadline", "value-error"],
)
async def test_other_exceptions_are_not_retried(
    error: Exception, loop_clock: ManualLoopClock, sleep: RecordingSleep
) -> None:
    """Only BackendError is transient: anything else reaches the caller after one attempt."""
    inner = FlakyBackend(error=error)
    backend = retrying(inner, 3, loop_clock, sleep)
    with pytest.raises(type(error)) as raised:
        await backend.get_patient("P1")
    assert raised.value is error
    assert inner.calls == 1
    assert (backend.retried, backend.gave_up) == (0, 0)
    assert sleep.waits == []


async def test_waits_stay_within_the_full_jitter_windows(
    loop_clock: ManualLoopClock, sleep: RecordingSleep
) -> None:
    """The k-th wait is drawn from [0, min(MAX, BASE x 2**(k-1))], and really is random."""
    retries = 8
    backend = retrying(FlakyBackend(ALWAYS), retries, loop_clock, sleep)
    for _ in range(200):
        with pytest.raises(BackendError):
            await backend.get_patient("P1")
    per_call = [sleep.waits[i : i + retries] for i in range(0, len(sleep.waits), retries)]
    assert len(per_call) == 200
    for waits in per_call:
        for k, wait in enumerate(waits, start=1):
            assert 0.0 <= wait <= window(k)
    first_waits = [waits[0] for waits in per_call]
    assert min(first_waits) < window(1) / 2 < max(first_waits)


@pytest.mark.usefixtures("widest_waits")
async def test_windows_double_up_to_the_cap(
    loop_clock: ManualLoopClock, sleep: RecordingSleep
) -> None:
    """The jitter window starts at BASE, doubles per retry and is capped at MAX."""
    backend = retrying(FlakyBackend(ALWAYS), 8, loop_clock, sleep)
    with pytest.raises(BackendError):
        await backend.get_patient("P1")
    assert sleep.waits == [0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert sleep.waits == [window(k) for k in range(1, 9)]


async def test_stats_merge_retry_counters_with_the_inner_backend(
    loop_clock: ManualLoopClock, sleep: RecordingSleep
) -> None:
    """stats() is the inner backend's stats plus a `retries` section with max/retried/gave_up."""
    inner = FlakyBackend(2)
    backend = retrying(inner, 1, loop_clock, sleep)
    with pytest.raises(BackendError):
        await backend.get_patient("P1")
    await backend.get_patient("P2")
    assert backend.stats() == {
        "backend": "flaky",
        "total_queries": 3,
        "total_errors": 0,
        "retries": {"max": 1, "retried": 1, "gave_up": 1},
    }


async def test_passes_name_health_and_close_through(
    loop_clock: ManualLoopClock, sleep: RecordingSleep
) -> None:
    """The wrapper keeps the inner backend's name and health, and closes it."""
    inner = FlakyBackend()
    backend = retrying(inner, 2, loop_clock, sleep)
    assert backend.name == "flaky"
    assert backend.health() == inner.health()
    await backend.close()
    assert inner.closed
