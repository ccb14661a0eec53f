"""Audit records as JSON lines and as FHIR AuditEvents (validated with fhir.resources)."""

from __future__ import annotations

import json

import pytest

from carebench.audit.record import (
    OUTCOMES,
    PURPOSES_OF_USE,
    AuditRecord,
    audit_event,
    check_purpose,
    encode_fhir,
    encode_json,
    fhir_outcome,
    outcome_of,
    utc_timestamp,
)
from carebench.models import EVERYTHING, READ, SEARCH
from tests.fhir.validation import validate

# 2026-11-28T10:00:00.250Z
WHEN = 1795860000.25


def record(**changes: object) -> AuditRecord:
    fields: dict[str, object] = {
        "time": WHEN,
        "request_id": "req-1",
        "subject": "clinician-7",
        "client_id": "ward-app",
        "client_address": "10.0.0.7",
        "action": READ,
        "resource_ids": ("P00042",),
        "status": 200,
        "purpose_of_use": "TREAT",
        "latency": 0.0123456,
    }
    fields.update(changes)
    return AuditRecord(**fields)  # type: ignore[arg-type]


def test_a_json_line_has_every_field() -> None:
    """One line, ending in a newline, with the documented fields and nothing else."""
    line = encode_json(record())
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == {
        "time": "2026-11-28T10:00:00.250Z",
        "request_id": "req-1",
        "subject": "clinician-7",
        "client_id": "ward-app",
        "client_address": "10.0.0.7",
        "action": "read",
        "resource_type": "Patient",
        "resource_ids": ["P00042"],
        "outcome": "success",
        "status": 200,
        "purpose_of_use": "TREAT",
        "latency_ms": 12.346,
    }


@pytest.mark.parametrize(
    ("status", "outcome", "fhir"),
    [
        (200, "success", "0"),
        (400, "invalid", "4"),
        (401, "denied", "4"),
        (403, "denied", "4"),
        (404, "not_found", "4"),
        (429, "rejected", "4"),
        (499, "client_gone", "4"),
        (500, "error", "8"),
        (503, "rejected", "8"),
        (504, "timeout", "8"),
        (418, "error", "4"),
    ],
)
def test_outcomes_by_status(status: int, outcome: str, fhir: str) -> None:
    """Each status a lookup can end with has its outcome, in both formats."""
    assert outcome_of(status) == outcome
    assert fhir_outcome(status) == fhir
    assert json.loads(encode_json(record(status=status)))["outcome"] == outcome


def test_utc_timestamps_keep_milliseconds() -> None:
    """ISO 8601 in UTC with milliseconds, truncated, never rounded past the second."""
    assert utc_timestamp(WHEN) == "2026-11-28T10:00:00.250Z"
    assert utc_timestamp(WHEN + 0.9999) == "2026-11-28T10:00:01.249Z"


def test_purpose_of_use_codes() -> None:
    """Known HL7 codes pass; others get a 400 message with the closest code, truncated."""
    assert {"TREAT", "ETREAT", "HPAYMT", "HOPERAT", "PUBHLTH"} <= PURPOSES_OF_USE
    assert check_purpose("TREAT") is None
    assert "did you mean 'TREAT'?" in (check_purpose("TRAET") or "")
    message = check_purpose("x" * 500) or ""
    assert "x" * 41 not in message and "HL7 v3 PurposeOfUse" in message
    assert check_purpose("treat") is not None  # codes are case-sensitive


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"subject": None, "client_id": None, "purpose_of_use": None, "status": 401},
        {"client_address": None, "status": 499},
        {"action": SEARCH, "resource_ids": ("P1", "P2", "P3"), "status": 503},
        {"action": EVERYTHING, "status": 504, "client_id": None},
        {"status": 500},
    ],
)
def test_fhir_audit_events_validate(changes: dict[str, object]) -> None:
    """Every variant is a valid FHIR AuditEvent (fhir.resources) with codes from R4's sets."""
    data = json.loads(encode_fhir(record(**changes)))
    model = validate(data)
    assert model.get_resource_type() == "AuditEvent"
    assert data["action"] in {"C", "R", "U", "D", "E"}
    assert data["outcome"] in {"0", "4", "8", "12"}
    assert [agent["requestor"] for agent in data["agent"]].count(True) == 1


def test_a_fhir_audit_event_names_who_what_and_why() -> None:
    """Subject, client, address, each patient by reference, the purpose and the period."""
    event = audit_event(record(action=SEARCH, resource_ids=("P1", "P2")))
    person, client = event["agent"]
    assert person["who"]["identifier"]["value"] == "clinician-7"
    assert person["network"] == {"address": "10.0.0.7", "type": "2"}
    assert client["who"]["identifier"]["value"] == "ward-app"
    assert client["requestor"] is False
    references = [entity["what"].get("reference") for entity in event["entity"]]
    assert references == ["Patient/P1", "Patient/P2", None]
    assert event["entity"][-1]["what"]["identifier"]["value"] == "req-1"
    assert event["subtype"][0]["code"] == "search-type" and event["action"] == "E"
    assert event["purposeOfEvent"][0]["coding"][0]["code"] == "TREAT"
    assert event["period"] == {"start": "2026-11-28T10:00:00.237Z", "end": event["recorded"]}
    assert event["outcomeDesc"] == "200 success"


def test_every_outcome_status_is_named() -> None:
    """The table covers what the app answers lookups with."""
    assert set(OUTCOMES) == {200, 400, 401, 403, 404, 429, 499, 500, 503, 504}
