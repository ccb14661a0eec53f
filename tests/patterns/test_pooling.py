"""ObjectPool and PooledResponseEncoder: honest hit/miss counts and no PHI across requests."""

from __future__ import annotations

from typing import Any

import msgspec

from carebench.backends.records import synthetic_patient
from carebench.models import Patient
from carebench.patterns.pooling import (
    INITIAL_BUFFER_BYTES,
    ObjectPool,
    PooledResponseEncoder,
    ResponseSlot,
    SlotScrubber,
)
from carebench.responses import PatientResponse


def as_json(patient: Patient) -> Any:
    """The patient as a decoded JSON object (lists, not tuples)."""
    return msgspec.json.decode(msgspec.json.encode(patient))


class Box:
    """A pooled object with a single mutable field."""

    def __init__(self) -> None:
        self.value: str | None = None


def clear_box(box: Box) -> None:
    box.value = None


def test_acquire_on_empty_pool_is_a_miss() -> None:
    """Acquiring from an empty pool creates an object and counts a miss."""
    pool = ObjectPool(Box, clear_box)

    box = pool.acquire()

    assert isinstance(box, Box)
    assert (pool.hits, pool.misses, pool.created) == (0, 1, 1)


def test_release_then_acquire_is_a_hit_with_the_same_object() -> None:
    """A released object is handed out again and counted as a hit."""
    pool = ObjectPool(Box, clear_box)
    first = pool.acquire()
    pool.release(first)

    second = pool.acquire()

    assert second is first
    assert (pool.hits, pool.misses, pool.created) == (1, 1, 1)
    assert pool.stats()["hit_rate_percent"] == 50.0


def test_objects_not_released_are_never_reused() -> None:
    """Acquiring twice without release gives two objects and two misses."""
    pool = ObjectPool(Box, clear_box)

    a, b = pool.acquire(), pool.acquire()

    assert a is not b
    assert pool.stats() == {
        "hits": 0,
        "misses": 2,
        "created": 2,
        "idle": 0,
        "hit_rate_percent": 0.0,
    }


def test_release_scrubs_before_reuse() -> None:
    """The scrub callback runs on release, so the next user never sees the old value."""
    pool = ObjectPool(Box, clear_box)
    box = pool.acquire()
    box.value = "secret"

    pool.release(box)

    assert pool.acquire().value is None


def test_pool_keeps_at_most_max_idle_objects() -> None:
    """Releases beyond max_idle are dropped (still scrubbed), not kept."""
    pool = ObjectPool(Box, clear_box, max_idle=2)
    boxes = [pool.acquire() for _ in range(4)]
    for box in boxes:
        box.value = "phi"

    for box in boxes:
        pool.release(box)

    assert pool.idle == 2
    assert all(box.value is None for box in boxes)


def test_slot_scrubber_resets_response_and_zeroes_buffer() -> None:
    """SlotScrubber forgets every response field and zeroes every buffer byte."""
    slot = ResponseSlot()
    slot.response.success = True
    slot.response.patient = synthetic_patient("p-1")
    slot.response.timestamp = "2024-01-01T00:00:00Z"
    slot.response.request_id = "req-1"
    slot.buffer[:5] = b"Hello"

    SlotScrubber()(slot)

    assert msgspec.structs.asdict(slot.response) == msgspec.structs.asdict(PatientResponse())
    assert len(slot.buffer) == INITIAL_BUFFER_BYTES
    assert not any(slot.buffer)


def test_slot_scrubber_zeroes_a_grown_buffer() -> None:
    """A buffer larger than the initial size is zeroed in full."""
    slot = ResponseSlot()
    slot.buffer = bytearray(b"\xff" * (INITIAL_BUFFER_BYTES * 3))

    SlotScrubber()(slot)

    assert len(slot.buffer) == INITIAL_BUFFER_BYTES * 3
    assert not any(slot.buffer)


def test_encode_patient_produces_the_response_json() -> None:
    """The body decodes to {success, patient, timestamp, request_id} for that patient."""
    encoder = PooledResponseEncoder()
    patient = synthetic_patient("p-42")

    body = encoder.encode_patient(patient, "req-42")

    decoded = msgspec.json.decode(body)
    assert decoded["success"] is True
    assert decoded["patient"] == as_json(patient)
    assert decoded["request_id"] == "req-42"
    assert decoded["timestamp"].endswith("Z")
    assert decoded.get("error") is None


def test_encoder_reuses_one_slot_and_counts_hits() -> None:
    """Sequential encodes reuse the same slot: one miss, then hits."""
    encoder = PooledResponseEncoder()

    for i in range(5):
        encoder.encode_patient(synthetic_patient(f"p-{i}"), f"req-{i}")

    stats = encoder.stats()
    assert (stats["misses"], stats["hits"], stats["created"], stats["idle"]) == (1, 4, 1, 1)


def test_slot_returned_to_pool_holds_no_patient_data() -> None:
    """After encoding, the idle slot has no patient and an all-zero buffer."""
    pool: ObjectPool[ResponseSlot] = ObjectPool(ResponseSlot, SlotScrubber())
    encoder = PooledResponseEncoder(pool)
    encoder.encode_patient(synthetic_patient("p-1"), "req-1")

    slot = pool.acquire()

    assert msgspec.structs.asdict(slot.response) == msgspec.structs.asdict(PatientResponse())
    assert not any(slot.buffer)


def test_short_body_after_long_one_contains_nothing_of_the_first() -> None:
    """Encoding a short patient after a long one leaks no bytes of the long one."""
    encoder = PooledResponseEncoder()
    long_patient = msgspec.structs.replace(
        synthetic_patient("long"),
        first_name="Bartholomew" * 40,
        last_name="Featherstonehaugh" * 40,
        medications=tuple(f"Secretmed {i}mg" for i in range(50)),
    )
    short_patient = msgspec.structs.replace(
        synthetic_patient("s"), medications=(), allergies=(), diagnosis_codes=("I10",)
    )
    long_body = encoder.encode_patient(long_patient, "req-long")
    assert len(long_body) > INITIAL_BUFFER_BYTES

    short_body = encoder.encode_patient(short_patient, "req-short")

    assert len(short_body) < len(long_body)
    for leaked in (b"Bartholomew", b"Featherstonehaugh", b"Secretmed", b"req-long", b"\x00"):
        assert leaked not in short_body
    decoded = msgspec.json.decode(short_body)
    assert decoded["patient"] == as_json(short_patient)
    assert decoded["request_id"] == "req-short"


def test_returned_body_is_not_a_view_of_the_pooled_buffer() -> None:
    """The body is an independent copy: later encodes do not change it."""
    encoder = PooledResponseEncoder()
    first = encoder.encode_patient(synthetic_patient("p-1"), "req-1")
    snapshot = bytes(first)

    encoder.encode_patient(synthetic_patient("p-2"), "req-2")

    assert isinstance(first, bytes)
    assert first == snapshot
    assert msgspec.json.decode(first)["request_id"] == "req-1"
