"""Synthetic patient records: deterministic per id, complete, plausible."""

from __future__ import annotations

import datetime as dt
import re

import msgspec

from carebench.backends.records import ICD10_CODES, synthetic_patient
from carebench.models import Patient

#: The patient fields of the Go reference's JSON.
REFERENCE_FIELDS = {
    "id",
    "medical_record_number",
    "first_name",
    "last_name",
    "date_of_birth",
    "gender",
    "diagnosis_codes",
    "medications",
    "allergies",
    "last_visit_date",
    "primary_physician",
    "insurance_provider",
    "blood_type",
}
ICD10 = re.compile(r"[A-Z][0-9]{2}(\.[0-9A-Z]{1,4})?")


def test_same_id_gives_equal_record() -> None:
    """Two lookups of one id return equal records."""
    assert synthetic_patient("patient-42") == synthetic_patient("patient-42")


def test_record_is_deterministic_across_cache_clear() -> None:
    """A record rebuilt after the cache is cleared equals the one built before."""
    before = synthetic_patient("patient-7")
    synthetic_patient.cache_clear()

    after = synthetic_patient("patient-7")

    assert after is not before
    assert after == before


def test_different_ids_usually_differ() -> None:
    """Different ids give different records beyond the id itself."""
    patients = [synthetic_patient(f"p-{i}") for i in range(200)]

    mrns = {p.medical_record_number for p in patients}
    names = {(p.first_name, p.last_name, p.date_of_birth) for p in patients}
    assert len(mrns) == 200
    assert len(names) >= 190


def test_record_carries_the_requested_id() -> None:
    """The record's id is the id that was asked for."""
    assert synthetic_patient("A-1.b").id == "A-1.b"


def test_record_has_every_reference_field() -> None:
    """The JSON form has exactly the reference's fields, with the scalar ones non-empty."""
    patient = synthetic_patient("patient-1")
    as_json = msgspec.to_builtins(patient)

    assert set(as_json) == REFERENCE_FIELDS
    for name in REFERENCE_FIELDS - {"diagnosis_codes", "medications", "allergies"}:
        assert isinstance(as_json[name], str)
        assert as_json[name], name
    assert len(patient.diagnosis_codes) >= 1


def test_diagnosis_codes_look_like_icd10() -> None:
    """Every diagnosis code has ICD-10 shape (letter, two digits, optional .suffix)."""
    patients = [synthetic_patient(f"icd-{i}") for i in range(300)]
    codes = {code for p in patients for code in p.diagnosis_codes}

    assert codes
    assert all(ICD10.fullmatch(code) for code in codes), codes
    assert codes <= set(ICD10_CODES)
    assert all(len(set(p.diagnosis_codes)) == len(p.diagnosis_codes) for p in patients)


def test_dates_are_iso_and_plausible() -> None:
    """Birth dates fall in 1930-2020 and last visits on or after 2024, as ISO dates."""
    for i in range(200):
        patient: Patient = synthetic_patient(f"date-{i}")
        born = dt.date.fromisoformat(patient.date_of_birth)
        visited = dt.date.fromisoformat(patient.last_visit_date)
        assert dt.date(1930, 1, 1) <= born <= dt.date(2020, 12, 31)
        assert visited >= dt.date(2024, 1, 1)
        assert re.fullmatch(r"MRN-[0-9]{8}", patient.medical_record_number)
