"""JSON response bodies, in the reference's shape, and the encoder that turns them into bytes."""

from __future__ import annotations

import time
from typing import Protocol

import msgspec

from carebench.models import Patient
from carebench.patterns.stats import PoolStats


class PatientResponse(msgspec.Struct, gc=False):
    """`{"success": true, "patient", "timestamp", "request_id"}`; mutable so it can be pooled."""

    success: bool = False
    patient: Patient | None = None
    timestamp: str = ""
    request_id: str = ""


class ErrorResponse(msgspec.Struct, gc=False):
    """`{"success": false, "error", "timestamp", "request_id"}`: the shape of every failure."""

    error: str
    timestamp: str
    request_id: str
    success: bool = False


def utc_timestamp() -> str:
    """RFC 3339 UTC timestamp with microseconds, as Go's time.Time marshals.

    The date and time are formatted once a second; only the microseconds change per call
    (~0.45 us, against ~0.65 us with an lru_cache'd formatter and ~2 us for
    `datetime.now().isoformat()`, on the request path).
    """
    global _formatted_second, _second_prefix
    micros = time.time_ns() // 1000
    second = micros // 1_000_000
    if second != _formatted_second:
        _second_prefix = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second))
        _formatted_second = second
    return f"{_second_prefix}{micros % 1_000_000:06d}Z"


#: The Unix second `_second_prefix` (`YYYY-MM-DDTHH:MM:SS.`) was formatted for.
_formatted_second = -1
_second_prefix = ""


class ResponseEncoder(Protocol):
    """Turns a patient (or an error) into a response body."""

    def encode_patient(self, patient: Patient, request_id: str) -> bytes: ...

    def stats(self) -> PoolStats | None: ...


class PlainResponseEncoder:
    """Allocates a fresh response object and output buffer for every request."""

    def __init__(self) -> None:
        self._encoder = msgspec.json.Encoder()

    def encode_patient(self, patient: Patient, request_id: str) -> bytes:
        body = PatientResponse(
            success=True, patient=patient, timestamp=utc_timestamp(), request_id=request_id
        )
        return self._encoder.encode(body)

    def stats(self) -> None:
        return None


#: Shared rather than per call: a msgspec Encoder holds only its settings, nothing of the
#: messages it encoded, so one instance serves every error.
_ERROR_ENCODER = msgspec.json.Encoder()


def encode_error(message: str, request_id: str) -> bytes:
    """The error body every failure shares: success false, a readable `error`."""
    return _ERROR_ENCODER.encode(ErrorResponse(message, utc_timestamp(), request_id))
