"""Response timestamps and bodies keep the reference's format."""

from __future__ import annotations

import datetime as dt

import msgspec

from carebench.backends.records import synthetic_patient
from carebench.responses import PlainResponseEncoder, encode_error, utc_timestamp


def test_timestamp_is_rfc3339_utc_with_microseconds() -> None:
    """utc_timestamp() is `YYYY-MM-DDTHH:MM:SS.ffffffZ` and within a second of now."""
    stamp = utc_timestamp()
    assert stamp.endswith("Z") and len(stamp) == len("2026-01-01T00:00:00.000000Z")
    parsed = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert abs((dt.datetime.now(dt.UTC) - parsed).total_seconds()) < 1.0


def test_bodies_have_the_reference_fields() -> None:
    """Success bodies carry success/patient/timestamp/request_id; errors success false + error."""
    ok = msgspec.json.decode(PlainResponseEncoder().encode_patient(synthetic_patient("P1"), "r1"))
    assert list(ok) == ["success", "patient", "timestamp", "request_id"]
    assert ok["success"] is True and ok["request_id"] == "r1"
    error = msgspec.json.decode(encode_error("boom", "r2"))
    assert error["success"] is False and error["error"] == "boom" and error["request_id"] == "r2"
