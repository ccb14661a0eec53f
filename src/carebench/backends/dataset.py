"""The normalised schema both real databases serve, and the synthetic rows seeded into it.

A seeded record read back from any database equals `synthetic_patient(id)` field for field,
so the simulator and the real databases answer the same id with the same body.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from carebench.backends.records import patient_id_for, synthetic_patient
from carebench.models import Patient

#: How many patients `carebench db seed` loads unless told otherwise.
DEFAULT_PATIENTS = 10_000
#: The reference's example id, which default load tests ask for: always seeded.
EXAMPLE_ID = "P12345"

#: Portable DDL (SQLite and PostgreSQL): a patient and its ordered lists; list rows are keyed
#: (patient_id, position), which is also the index a lookup by patient uses.
SCHEMA = (
    """CREATE TABLE IF NOT EXISTS patients (
        id TEXT PRIMARY KEY,
        medical_record_number TEXT NOT NULL UNIQUE,
        first_name TEXT NOT NULL,
        last_name TEXT NOT NULL,
        date_of_birth TEXT NOT NULL,
        gender TEXT NOT NULL,
        last_visit_date TEXT NOT NULL,
        primary_physician TEXT NOT NULL,
        insurance_provider TEXT NOT NULL,
        blood_type TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS diagnoses (
        patient_id TEXT NOT NULL REFERENCES patients(id),
        position INTEGER NOT NULL,
        icd10_code TEXT NOT NULL,
        PRIMARY KEY (patient_id, position)
    )""",
    """CREATE TABLE IF NOT EXISTS medications (
        patient_id TEXT NOT NULL REFERENCES patients(id),
        position INTEGER NOT NULL,
        name TEXT NOT NULL,
        PRIMARY KEY (patient_id, position)
    )""",
    """CREATE TABLE IF NOT EXISTS allergies (
        patient_id TEXT NOT NULL REFERENCES patients(id),
        position INTEGER NOT NULL,
        substance TEXT NOT NULL,
        PRIMARY KEY (patient_id, position)
    )""",
    "CREATE INDEX IF NOT EXISTS patients_by_last_name ON patients (last_name, first_name)",
)
#: The patients columns, in the order `PatientRows.patient` holds them.
PATIENT_COLUMNS = (
    "id",
    "medical_record_number",
    "first_name",
    "last_name",
    "date_of_birth",
    "gender",
    "last_visit_date",
    "primary_physician",
    "insurance_provider",
    "blood_type",
)
#: list table -> its value column.
LIST_TABLES = {"diagnoses": "icd10_code", "medications": "name", "allergies": "substance"}


@dataclass(frozen=True, slots=True)
class PatientRows:
    """One patient as rows: the patients row and (patient_id, position, value) list rows."""

    patient: tuple[str, ...]
    diagnoses: list[tuple[str, int, str]]
    medications: list[tuple[str, int, str]]
    allergies: list[tuple[str, int, str]]


def seeded_ids(patients: int) -> list[str]:
    """The ids `db seed --patients N` loads: P00000 .. P<N-1>, plus EXAMPLE_ID."""
    ids = [patient_id_for(index) for index in range(patients)]
    return ids if EXAMPLE_ID in ids else [*ids, EXAMPLE_ID]


def rows_of(patient: Patient) -> PatientRows:
    def listed(values: Sequence[str]) -> list[tuple[str, int, str]]:
        return [(patient.id, position, value) for position, value in enumerate(values)]

    return PatientRows(
        tuple(getattr(patient, column) for column in PATIENT_COLUMNS),
        listed(patient.diagnosis_codes),
        listed(patient.medications),
        listed(patient.allergies),
    )


def seed_rows(patients: int) -> Iterator[PatientRows]:
    """The rows of every seeded patient, in id order (deterministic: same N, same rows)."""
    for patient_id in seeded_ids(patients):
        yield rows_of(synthetic_patient(patient_id))


def patient_from_row(
    row: Sequence[str],
    diagnoses: Sequence[str],
    medications: Sequence[str],
    allergies: Sequence[str],
) -> Patient:
    """A Patient from a patients row (PATIENT_COLUMNS order) and its ordered lists."""
    fields = dict(zip(PATIENT_COLUMNS, row, strict=True))
    return Patient(
        **fields,
        diagnosis_codes=tuple(diagnoses),
        medications=tuple(medications),
        allergies=tuple(allergies),
    )
