"""One access attempt as the audit log keeps it, and its two encodings: a JSON line of
carebench's own fields, or a FHIR R4 AuditEvent.

Only identifiers: who asked (a token's `sub` and `client_id`, an API key's digest prefix), the
client's address, the ids asked for and what came of it. Never a name, a date of birth or any
other part of a record: nothing read from the backend reaches this module.
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Callable
from functools import lru_cache
from typing import Any, TypedDict

import msgspec

from carebench.models import EVERYTHING, READ, SEARCH

RESOURCE_TYPE = "Patient"
#: An answer's status -> the record's outcome. 499: the client left before its answer.
OUTCOMES = {
    200: "success",
    400: "invalid",
    401: "denied",
    403: "denied",
    404: "not_found",
    429: "rejected",
    499: "client_gone",
    500: "error",
    503: "rejected",
    504: "timeout",
}
#: HL7 v3 PurposeOfUse codes (the value set behind X-Purpose-Of-Use; TREAT = treatment).
PURPOSES_OF_USE = frozenset(
    {
        "BTG", "CAREMGT", "CLINTRCH", "CLINTRL", "COC", "COVERAGE", "DECEASED", "DONAT",
        "ETREAT", "FAMRQT", "FRAUD", "GOV", "HACCRED", "HCOMPL", "HDECD", "HDIRECT", "HDM",
        "HLEGAL", "HMARKT", "HOPERAT", "HOUTCOMS", "HPAYMT", "HPRGRP", "HQUALIMP", "HRESCH",
        "HSYSADMIN", "LABELING", "METAMGT", "MILCDM", "PATADMIN", "PATRQT", "PATSFTY", "PERFMSR",
        "POPHLTH", "PUBHLTH", "PWATRNY", "RECORDMGT", "SRVC", "SYSDEV", "TRAIN", "TRANSRCH",
        "TREAT",
    }
)  # fmt: skip
PURPOSE_HEADER = b"x-purpose-of-use"


class AuditRecord(msgspec.Struct, frozen=True, gc=False):
    """One access attempt, as cheap to build on the event loop as it can be: `time` is when
    the answer was sent (seconds since the epoch), `latency` how long the request had taken
    then (seconds). The encoders turn it into a line on the writer thread."""

    time: float
    request_id: str
    subject: str | None
    client_id: str | None
    client_address: str | None
    action: str
    resource_ids: tuple[str, ...]
    status: int
    purpose_of_use: str | None
    latency: float


class AuditLine(TypedDict):
    """`--audit-format json`: one such object per line."""

    time: str
    request_id: str
    subject: str | None
    client_id: str | None
    client_address: str | None
    action: str
    resource_type: str
    resource_ids: list[str]
    outcome: str
    status: int
    purpose_of_use: str | None
    latency_ms: float


def outcome_of(status: int) -> str:
    """The record's outcome for an answer's status (an unexpected one is an error)."""
    return OUTCOMES.get(status, "error")


def check_purpose(value: str) -> str | None:
    """None when `value` is a known purpose-of-use code, else the 400 message."""
    if value in PURPOSES_OF_USE:
        return None
    shown = value[:40]
    close = difflib.get_close_matches(shown, sorted(PURPOSES_OF_USE), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return (
        f"unknown X-Purpose-Of-Use {shown!r}{hint}: use an HL7 v3 PurposeOfUse code such as "
        "TREAT, ETREAT, HPAYMT or HOPERAT"
    )


def utc_timestamp(seconds: float) -> str:
    """`seconds` since the epoch as an ISO 8601 instant with milliseconds, in UTC."""
    whole = int(seconds)
    return f"{_utc_second(whole)}.{int((seconds - whole) * 1000):03d}Z"


@lru_cache(maxsize=16)
def _utc_second(whole: int) -> str:
    # Formatting a time costs ~2 us; a writer's batch mostly shares one second.
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))


_JSON = msgspec.json.Encoder()


def audit_line(record: AuditRecord) -> AuditLine:
    """The record as the JSON format's object."""
    return {
        "time": utc_timestamp(record.time),
        "request_id": record.request_id,
        "subject": record.subject,
        "client_id": record.client_id,
        "client_address": record.client_address,
        "action": record.action,
        "resource_type": RESOURCE_TYPE,
        "resource_ids": list(record.resource_ids),
        "outcome": outcome_of(record.status),
        "status": record.status,
        "purpose_of_use": record.purpose_of_use,
        "latency_ms": round(record.latency * 1000, 3),
    }


def encode_json(record: AuditRecord) -> bytes:
    """The record as one JSON line."""
    return _JSON.encode(audit_line(record)) + b"\n"


# FHIR R4 AuditEvent codes: a RESTful operation; the interaction by lookup; C R U D E action.
_TYPE = {
    "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
    "code": "rest",
    "display": "RESTful Operation",
}
_INTERACTIONS = {READ: "read", SEARCH: "search-type", EVERYTHING: "operation"}
_ACTIONS = {READ: "R", SEARCH: "E", EVERYTHING: "E"}
_SOURCE = {
    "site": "carebench",
    "observer": {"display": "carebench"},
    "type": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/security-source-type",
            "code": "3",
            "display": "Web Server",
        }
    ],
}
_PATIENT_ENTITY = {
    "type": {
        "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
        "code": "1",
        "display": "Person",
    },
    "role": {
        "system": "http://terminology.hl7.org/CodeSystem/object-role",
        "code": "1",
        "display": "Patient",
    },
}
_APPLICATION = {
    "coding": [
        {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110150"},
    ]
}


def fhir_outcome(status: int) -> str:
    """AuditEvent.outcome: 0 success, 4 minor failure (the request's own fault: refused,
    unknown, invalid, gone), 8 serious failure (the server's: shed, timed out, failed)."""
    if status == 200:
        return "0"
    return "8" if status >= 500 else "4"


def audit_event(record: AuditRecord) -> dict[str, Any]:
    """The record as a FHIR R4 AuditEvent resource (a plain dict, ready to encode)."""
    ended = utc_timestamp(record.time)
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "type": _TYPE,
        "subtype": [
            {
                "system": "http://hl7.org/fhir/restful-interaction",
                "code": _INTERACTIONS.get(record.action, "operation"),
            }
        ],
        "action": _ACTIONS.get(record.action, "E"),
        "recorded": ended,
        "period": {"start": utc_timestamp(record.time - record.latency), "end": ended},
        "outcome": fhir_outcome(record.status),
        "outcomeDesc": f"{record.status} {outcome_of(record.status)}",
        "agent": _agents(record),
        "source": _SOURCE,
        "entity": [
            {"what": {"reference": f"{RESOURCE_TYPE}/{patient_id}"}, **_PATIENT_ENTITY}
            for patient_id in record.resource_ids
        ]
        + [{"what": {"identifier": {"value": record.request_id}}, "name": "request-id"}],
        "extension": [
            {
                "url": "https://carebench.dev/fhir/StructureDefinition/latency-ms",
                "valueDecimal": round(record.latency * 1000, 3),
            }
        ],
    }
    if record.purpose_of_use is not None:
        event["purposeOfEvent"] = [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
                        "code": record.purpose_of_use,
                    }
                ]
            }
        ]
    return event


def _agents(record: AuditRecord) -> list[dict[str, Any]]:
    """Who asked (known when authenticated, else only their address), and their client."""
    person: dict[str, Any] = {"requestor": True}
    if record.subject is not None:
        person["who"] = {"identifier": {"value": record.subject}}
    if record.client_address is not None:
        person["network"] = {"address": record.client_address, "type": "2"}
    agents = [person]
    if record.client_id is not None:
        agents.append(
            {
                "type": _APPLICATION,
                "who": {"identifier": {"value": record.client_id}},
                "requestor": False,
            }
        )
    return agents


def encode_fhir(record: AuditRecord) -> bytes:
    """The record as one line of FHIR JSON (an AuditEvent)."""
    return _JSON.encode(audit_event(record)) + b"\n"


#: --audit-format -> how a record becomes a line.
ENCODERS: dict[str, Callable[[AuditRecord], bytes]] = {"json": encode_json, "fhir": encode_fhir}
