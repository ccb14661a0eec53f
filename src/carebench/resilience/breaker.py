"""A circuit breaker: after a run of failures, fail fast instead of piling onto a failing
backend; after a cool-down, let one probe through and close again if it succeeds.

A small state machine rather than purgatory or circuitbreaker: those read the wall clock
themselves (tests could not drive time), and the 503's Retry-After needs the time left
until the half-open probe, which they do not expose.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import TypeVar

from carebench.backends.base import Backend, BackendHealth, BackendStats, BreakerStats
from carebench.errors import BackendError, Rejected
from carebench.loop_clock import LoopClock, RunningLoopClock
from carebench.models import ClinicalRecord, Patient

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
DEADLINE_TOLERANCE = 0.001
T = TypeVar("T")


class CircuitBreaker:
    """closed -> open after `threshold` consecutive failures; open -> half_open after
    `reset_after` seconds; half_open lets one probe through: success closes, failure reopens.

    Calls carry the ticket `admit` gave them, so only verdicts that mean something count: a
    slow call admitted before the circuit opened cannot close it again.
    """

    def __init__(
        self, threshold: int = 5, reset_after: float = 5.0, loop_clock: LoopClock | None = None
    ):
        self.threshold = threshold
        self.reset_after = reset_after
        self._loop_clock = loop_clock or RunningLoopClock()
        self.state = CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False
        self.transitions: dict[str, int] = {}
        self.fast_failures = 0

    def admit(self) -> str | None:
        """May a call go to the backend now? "call" when closed, "probe" for the single
        half-open probe, None to fail fast."""
        if self.state == OPEN and self._loop_clock.now() - self._opened_at >= self.reset_after:
            self._move(HALF_OPEN)
        if self.state == CLOSED:
            return "call"
        if self.state == HALF_OPEN and not self._probing:
            self._probing = True
            return "probe"
        self.fast_failures += 1
        return None

    def retry_after(self) -> float:
        """Seconds until the breaker will let a probe through."""
        if self.state != OPEN:
            return 1.0
        return max(0.0, self._opened_at + self.reset_after - self._loop_clock.now())

    def record_success(self, ticket: str) -> None:
        """A call admitted with `ticket` succeeded. Only the probe's verdict counts while
        half-open, and late results of calls admitted before the circuit opened are ignored."""
        if self._counts(ticket):
            self._failures = 0
            self._probing = False
            if self.state == HALF_OPEN:
                self._move(CLOSED)

    def record_failure(self, ticket: str) -> None:
        if not self._counts(ticket):
            return
        self._probing = False
        self._failures += 1
        if self.state == HALF_OPEN or self._failures >= self.threshold:
            self._opened_at = self._loop_clock.now()
            self._move(OPEN)

    def release(self, ticket: str) -> None:
        """The call ended without a verdict (cancelled): a probe lets another one try."""
        if ticket == "probe" and self.state == HALF_OPEN:
            self._probing = False

    def _counts(self, ticket: str) -> bool:
        return (self.state == CLOSED and ticket == "call") or (
            self.state == HALF_OPEN and ticket == "probe"
        )

    def _move(self, state: str) -> None:
        key = f"{self.state}->{state}"
        self.transitions[key] = self.transitions.get(key, 0) + 1
        self.state = state

    def stats(self) -> BreakerStats:
        return {
            "state": self.state,
            "consecutive_failures": self._failures,
            "threshold": self.threshold,
            "reset_after_seconds": self.reset_after,
            "fast_failures": self.fast_failures,
            "transitions": dict(self.transitions),
        }


class BreakerBackend:
    """Guards a backend with a CircuitBreaker; an open circuit is a 503 with Retry-After."""

    def __init__(
        self, inner: Backend, breaker: CircuitBreaker, loop_clock: LoopClock | None = None
    ):
        self._inner = inner
        self.name = inner.name
        self.breaker = breaker
        self._loop_clock = loop_clock or RunningLoopClock()

    async def get_patient(self, patient_id: str, deadline: float | None = None) -> Patient:
        return await self._guarded(partial(self._inner.get_patient, patient_id, deadline), deadline)

    async def get_patients(
        self, patient_ids: Sequence[str], deadline: float | None = None
    ) -> tuple[Patient, ...]:
        return await self._guarded(
            partial(self._inner.get_patients, patient_ids, deadline), deadline
        )

    async def get_clinical_record(
        self, patient_id: str, deadline: float | None = None
    ) -> ClinicalRecord:
        call = partial(self._inner.get_clinical_record, patient_id, deadline)
        return await self._guarded(call, deadline)

    async def _guarded(self, call: Callable[[], Awaitable[T]], deadline: float | None) -> T:
        ticket = self.breaker.admit()
        if ticket is None:
            wait = math.ceil(self.breaker.retry_after()) or 1
            raise Rejected("circuit breaker open: the database is failing", retry_after=wait)
        try:
            answer = await call()
        except BackendError:
            self.breaker.record_failure(ticket)
            raise
        except asyncio.CancelledError:
            self._cancelled(ticket, deadline)
            raise
        except BaseException:  # not the database's verdict (e.g. a bug): no effect on the circuit
            self.breaker.release(ticket)
            raise
        self.breaker.record_success(ticket)
        return answer

    def _cancelled(self, ticket: str, deadline: float | None) -> None:
        # Cut off at the request's deadline: the database was too slow, which is a failure
        # (a hanging database must open the circuit). Cancelled earlier: no verdict. The
        # tolerance covers timers that fire a clock tick early.
        if deadline is not None and self._loop_clock.now() >= deadline - DEADLINE_TOLERANCE:
            self.breaker.record_failure(ticket)
        else:
            self.breaker.release(ticket)

    def health(self) -> BackendHealth:
        health = self._inner.health()
        # An open circuit degrades a healthy backend; a database that is down stays "down".
        if self.breaker.state != CLOSED and health["status"] == "healthy":
            health = {**health, "status": "degraded"}
        return {**health, "circuit_breaker": self.breaker.state}

    def stats(self) -> BackendStats:
        return {**self._inner.stats(), "circuit_breaker": self.breaker.stats()}

    async def start(self) -> None:
        await self._inner.start()

    async def close(self) -> None:
        await self._inner.close()
