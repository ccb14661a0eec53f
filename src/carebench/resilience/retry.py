"""Retries of transient backend errors: exponential backoff with full jitter (tenacity), never
past the request's deadline."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt
from tenacity.stop import stop_base
from tenacity.wait import wait_random_exponential

from carebench.backends.base import Backend, BackendHealth, BackendStats
from carebench.errors import BackendError
from carebench.loop_clock import LoopClock, RunningLoopClock
from carebench.models import ClinicalRecord, Patient

#: Backoff: attempt k waits uniform(0, min(MAX, BASE * 2**(k-1))) seconds (AWS "full jitter").
BACKOFF_BASE = 0.025
BACKOFF_MAX = 1.0
T = TypeVar("T")


class _StopBeforeDeadline(stop_base):
    """Stop when the next wait would end at or past the deadline: no attempt could finish."""

    def __init__(self, deadline: float | None, loop_clock: LoopClock) -> None:
        self._deadline = deadline
        self._loop_clock = loop_clock

    def __call__(self, retry_state: RetryCallState) -> bool:
        if self._deadline is None:
            return False
        return self._loop_clock.now() + (retry_state.upcoming_sleep or 0.0) >= self._deadline


class RetryingBackend:
    """Retries `BackendError` up to `retries` times; everything else passes through."""

    def __init__(
        self,
        inner: Backend,
        retries: int,
        loop_clock: LoopClock | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._inner = inner
        self.name = inner.name
        self.retries = retries
        self._loop_clock = loop_clock or RunningLoopClock()
        self._sleep = sleep
        self.retried = 0
        self.gave_up = 0

    async def get_patient(self, patient_id: str, deadline: float | None = None) -> Patient:
        return await self._retried(partial(self._inner.get_patient, patient_id, deadline), deadline)

    async def get_patients(
        self, patient_ids: Sequence[str], deadline: float | None = None
    ) -> tuple[Patient, ...]:
        return await self._retried(
            partial(self._inner.get_patients, patient_ids, deadline), deadline
        )

    async def get_clinical_record(
        self, patient_id: str, deadline: float | None = None
    ) -> ClinicalRecord:
        call = partial(self._inner.get_clinical_record, patient_id, deadline)
        return await self._retried(call, deadline)

    async def _retried(self, call: Callable[[], Awaitable[T]], deadline: float | None) -> T:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.retries + 1)
            | _StopBeforeDeadline(deadline, self._loop_clock),
            wait=wait_random_exponential(multiplier=BACKOFF_BASE, max=BACKOFF_MAX),
            retry=retry_if_exception_type(BackendError),
            sleep=self._sleep,
            before_sleep=self._count_retry,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await call()
        except BackendError:
            self.gave_up += 1
            raise
        raise AssertionError("unreachable: tenacity either returns or re-raises")

    def _count_retry(self, retry_state: RetryCallState) -> None:
        self.retried += 1

    def health(self) -> BackendHealth:
        return self._inner.health()

    def stats(self) -> BackendStats:
        return {
            **self._inner.stats(),
            "retries": {"max": self.retries, "retried": self.retried, "gave_up": self.gave_up},
        }

    async def start(self) -> None:
        await self._inner.start()

    async def close(self) -> None:
        await self._inner.close()
