"""Domain types: the synthetic patient record and the query a pattern carries to a backend."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import msgspec

#: Request priority classes, most urgent first (X-Request-Priority).
PRIORITIES = ("critical", "standard", "batch")
PRIORITY_RANK = {name: rank for rank, name in enumerate(PRIORITIES)}
#: ER/ICU lookups cannot wait long; reporting queries can (the reference README's advice).
DEFAULT_CLASS_TIMEOUTS = {"critical": 2.0, "standard": 5.0, "batch": 30.0}

#: FHIR resource ids: https://hl7.org/fhir/datatypes.html#id
PATIENT_ID_CHARACTERS = r"[A-Za-z0-9\-.]"
PATIENT_ID_MAX_LENGTH = 64
PATIENT_ID_PATTERN = re.compile(f"{PATIENT_ID_CHARACTERS}{{1,{PATIENT_ID_MAX_LENGTH}}}")


class Patient(msgspec.Struct, frozen=True, gc=False):
    """A synthetic patient record with the reference project's fields."""

    id: str
    medical_record_number: str
    first_name: str
    last_name: str
    date_of_birth: str
    gender: str
    diagnosis_codes: tuple[str, ...]
    medications: tuple[str, ...]
    allergies: tuple[str, ...]
    last_visit_date: str
    primary_physician: str
    insurance_provider: str
    blood_type: str


def is_valid_patient_id(patient_id: str) -> bool:
    """True when `patient_id` follows FHIR's id syntax."""
    return PATIENT_ID_PATTERN.fullmatch(patient_id) is not None


@dataclass(slots=True)
class Query:
    """One patient lookup travelling through a pattern.

    `deadline` is on the event loop's clock. `client_gone` is set by the server when the
    client disconnects, so a pattern can skip work nobody will read; `connection` is the
    server's per-request object when it exposes a `disconnected` flag (uvicorn does), which
    saves a watcher task per request.
    """

    patient_id: str
    deadline: float
    request_id: str = ""
    priority: str = "standard"
    client_gone: bool = field(default=False)
    connection: Any = None

    def is_client_gone(self) -> bool:
        return self.client_gone or getattr(self.connection, "disconnected", False) is True
