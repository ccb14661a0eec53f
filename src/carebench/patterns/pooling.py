"""Object reuse, the Python analogue of Go's sync.Pool, with honest hit/miss accounting."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

import msgspec

from carebench.models import Patient
from carebench.patterns.stats import PoolStats
from carebench.responses import PatientResponse, utc_timestamp

T = TypeVar("T")


class ObjectPool(Generic[T]):
    """A free list: `acquire` reuses a released object or makes one; `release` scrubs it.

    Every object is scrubbed on release, before anyone else can acquire it, so nothing of one
    request (patient data above all) can surface in another.
    """

    def __init__(self, factory: Callable[[], T], scrub: Callable[[T], None], max_idle: int = 1024):
        self._factory = factory
        self._scrub = scrub
        self._free: list[T] = []
        self.max_idle = max_idle
        self.hits = 0
        self.misses = 0
        self.created = 0

    def acquire(self) -> T:
        if self._free:
            self.hits += 1
            return self._free.pop()
        self.misses += 1
        self.created += 1
        return self._factory()

    def release(self, obj: T) -> None:
        self._scrub(obj)
        if len(self._free) < self.max_idle:
            self._free.append(obj)

    @property
    def idle(self) -> int:
        return len(self._free)

    def stats(self) -> PoolStats:
        acquired = self.hits + self.misses
        return {
            "hits": self.hits,
            "misses": self.misses,
            "created": self.created,
            "idle": self.idle,
            "hit_rate_percent": round(100.0 * self.hits / acquired, 3) if acquired else 0.0,
        }


INITIAL_BUFFER_BYTES = 2048


class ResponseSlot:
    """A reusable response object (outside the cyclic GC) and its output buffer."""

    __slots__ = ("buffer", "response")

    def __init__(self) -> None:
        self.response = PatientResponse()
        self.buffer = bytearray(INITIAL_BUFFER_BYTES)


class SlotScrubber:
    """Forgets the patient and zeroes the buffer of a released slot, so no PHI outlives it.

    The zeroes are copied from one block kept here and grown to the largest buffer seen, so
    scrubbing allocates nothing per request.
    """

    def __init__(self) -> None:
        self._zeros = bytes(INITIAL_BUFFER_BYTES)

    def __call__(self, slot: ResponseSlot) -> None:
        response = slot.response
        response.success = False
        response.patient = None
        response.timestamp = ""
        response.request_id = ""
        size = len(slot.buffer)
        if len(self._zeros) < size:
            self._zeros = bytes(size)
        slot.buffer[:size] = memoryview(self._zeros)[:size]


class PooledResponseEncoder:
    """Encodes into pooled buffers with `msgspec`'s `encode_into`, reusing response objects.

    The body handed to the server is a copy: the transport may keep a view of the bytes it
    is given until the socket takes them, so a pooled buffer must never leave this function.
    """

    def __init__(self, pool: ObjectPool[ResponseSlot] | None = None) -> None:
        self._encoder = msgspec.json.Encoder()
        self.pool = pool or ObjectPool(ResponseSlot, SlotScrubber())

    def encode_patient(self, patient: Patient, request_id: str) -> bytes:
        slot = self.pool.acquire()
        try:
            response = slot.response
            response.success = True
            response.patient = patient
            response.timestamp = utc_timestamp()
            response.request_id = request_id
            self._encoder.encode_into(response, slot.buffer)
            return bytes(slot.buffer)
        finally:
            self.pool.release(slot)

    def stats(self) -> PoolStats:
        return self.pool.stats()
