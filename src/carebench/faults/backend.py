"""A wrapper that applies a `--faults` schedule to any backend (simulator, SQLite, PostgreSQL).

It sits directly around the real backend, under the resilience wrappers, so retries and the
circuit breaker see injected faults exactly as they would see the database's own.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import TypeVar

from carebench.backends.base import (
    Backend,
    BackendHealth,
    BackendStats,
    FaultStats,
    FaultWindowStats,
)
from carebench.errors import BackendError, PatientNotFound
from carebench.faults.schedule import FAULT_KINDS, FaultSchedule, FaultWindow
from carebench.loop_clock import LoopClock, RunningLoopClock
from carebench.models import ClinicalRecord, Patient

#: A slowed query that would end past its deadline sleeps until just after it, so that the
#: caller's own cut-off at the deadline (every pattern has one) is what ends it.
DEADLINE_GRACE = 0.01
T = TypeVar("T")


class FaultyBackend:
    """`inner` with the faults of `schedule` applied, timed from `start()`.

    outage: the call fails at once with the error of an unreachable database; slow xN: the
    real call runs, then the wrapper sleeps (N-1) times its duration (holding the pattern's
    worker or permit, not a database connection); errors P%: the real call runs and its
    answer is replaced by a database error with probability P.
    """

    def __init__(
        self,
        inner: Backend,
        schedule: FaultSchedule,
        loop_clock: LoopClock | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._inner = inner
        self.name = inner.name
        self.schedule = schedule
        self._loop_clock = loop_clock or RunningLoopClock()
        self._sleep = sleep
        self._rng = rng or random.Random()
        #: Loop time at which the schedule's clock started; None until started.
        self.origin: float | None = None
        self.injected: dict[str, int] = dict.fromkeys(FAULT_KINDS, 0)

    def elapsed(self) -> float | None:
        """Seconds on the schedule's clock; None before `start()`."""
        return None if self.origin is None else self._loop_clock.now() - self.origin

    def active(self) -> FaultWindow | None:
        """The fault in effect now, if any."""
        elapsed = self.elapsed()
        return None if elapsed is None else self.schedule.active(elapsed)

    async def get_patient(self, patient_id: str, deadline: float | None = None) -> Patient:
        return await self._faulted(partial(self._inner.get_patient, patient_id, deadline), deadline)

    async def get_patients(
        self, patient_ids: Sequence[str], deadline: float | None = None
    ) -> tuple[Patient, ...]:
        return await self._faulted(
            partial(self._inner.get_patients, patient_ids, deadline), deadline
        )

    async def get_clinical_record(
        self, patient_id: str, deadline: float | None = None
    ) -> ClinicalRecord:
        call = partial(self._inner.get_clinical_record, patient_id, deadline)
        return await self._faulted(call, deadline)

    async def _faulted(self, call: Callable[[], Awaitable[T]], deadline: float | None) -> T:
        """`call()`, the inner backend's query, with the fault in effect now applied."""
        window = self.active()
        if window is None:
            return await call()
        if window.kind == "outage":
            self.injected["outage"] += 1
            raise BackendError("database unreachable: injected outage (--faults)")
        if window.kind == "errors":
            answer = await call()
            if self._rng.random() < window.rate:
                self.injected["errors"] += 1
                raise BackendError(f"injected database error (--faults {window.label})")
            return answer
        return await self._slowed(window, call, deadline)

    async def _slowed(
        self, window: FaultWindow, call: Callable[[], Awaitable[T]], deadline: float | None
    ) -> T:
        started = self._loop_clock.now()
        try:
            answer = await call()
        except (BackendError, PatientNotFound):
            # A slow database is slow to fail too.
            await self._stretch(window, started, deadline)
            raise
        await self._stretch(window, started, deadline)
        return answer

    async def _stretch(self, window: FaultWindow, started: float, deadline: float | None) -> None:
        """Sleep (factor - 1) times the call's duration, never far past its deadline."""
        self.injected["slow"] += 1
        now = self._loop_clock.now()
        extra = (now - started) * (window.factor - 1.0)
        if deadline is not None and now + extra > deadline + DEADLINE_GRACE:
            await self._sleep(max(0.0, deadline + DEADLINE_GRACE - now))
            raise BackendError(f"query timed out: {window.label} (--faults) ran past its deadline")
        if extra > 0:
            await self._sleep(extra)

    def health(self) -> BackendHealth:
        health = self._inner.health()
        window = self.active()
        if window is None:
            return health
        if window.kind == "outage":
            status = "down"
        else:
            status = "degraded" if health["status"] == "healthy" else health["status"]
        return {**health, "status": status, "fault": window.label}

    def stats(self) -> BackendStats:
        return {**self._inner.stats(), "faults": self.fault_stats()}

    def fault_stats(self) -> FaultStats:
        elapsed = self.elapsed()
        window = self.active()
        return {
            "schedule": [_window_stats(item) for item in self.schedule.windows],
            "elapsed_seconds": None if elapsed is None else round(elapsed, 6),
            "active": None if window is None else _window_stats(window),
            "injected": dict(self.injected),
        }

    async def start(self) -> None:
        """Start the inner backend, then the schedule's clock: faults are timed from the
        moment the backend can serve."""
        await self._inner.start()
        self.origin = self._loop_clock.now()

    async def close(self) -> None:
        await self._inner.close()


def _window_stats(window: FaultWindow) -> FaultWindowStats:
    return {
        "kind": window.kind,
        "label": window.label,
        "start_seconds": window.start,
        "end_seconds": None if window.duration is None else window.end,
    }
