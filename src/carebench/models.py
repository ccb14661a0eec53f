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


class ConditionRecord(msgspec.Struct, frozen=True, gc=False):
    """One diagnosis of a patient, with its ICD-10-CM code."""

    icd10_code: str
    #: active or resolved.
    clinical_status: str
    onset_date: str
    recorded_date: str


class MedicationRecord(msgspec.Struct, frozen=True, gc=False):
    """One medication a patient takes or took."""

    name: str
    #: active, completed or stopped.
    status: str
    started: str


class AllergyRecord(msgspec.Struct, frozen=True, gc=False):
    """One allergy or intolerance of a patient."""

    substance: str
    #: low, high or unable-to-assess.
    criticality: str
    reaction: str
    recorded_date: str


class ClinicalRecord(msgspec.Struct, frozen=True, gc=False):
    """A patient with the detail of its diagnoses, medications and allergies (in the order of
    `Patient.diagnosis_codes`, `medications` and `allergies`)."""

    patient: Patient
    conditions: tuple[ConditionRecord, ...]
    medications: tuple[MedicationRecord, ...]
    allergies: tuple[AllergyRecord, ...]


#: What a lookup asks the backend for: one patient (the legacy endpoint and FHIR read), the
#: patients among several ids (FHIR search), or a patient's clinical record ($everything).
READ = "read"
SEARCH = "search"
EVERYTHING = "everything"
#: What a pattern hands back for each kind of lookup.
Answer = Patient | tuple[Patient, ...] | ClinicalRecord


def is_valid_patient_id(patient_id: str) -> bool:
    """True when `patient_id` follows FHIR's id syntax."""
    return PATIENT_ID_PATTERN.fullmatch(patient_id) is not None


@dataclass(slots=True)
class Query:
    """One patient lookup travelling through a pattern.

    `lookup` says which backend call answers it (READ: `patient_id`; SEARCH: `patient_ids`,
    one call for all of them; EVERYTHING: `patient_id`'s clinical record). `deadline` is on
    the event loop's clock. `client_gone` is set by the server when the
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
    lookup: str = READ
    patient_ids: tuple[str, ...] = ()
    #: Who asks (carebench.auth.credentials.Principal), set by the access gate once the
    #: credential is verified; read by the audit trail.
    principal: Any = None

    def is_client_gone(self) -> bool:
        return self.client_gone or getattr(self.connection, "disconnected", False) is True
