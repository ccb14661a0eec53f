"""The normalised schema both real databases serve, and the synthetic rows seeded into it.

A seeded record read back from any database equals `synthetic_patient(id)` field for field,
and its clinical record `synthetic_clinical(id)`, so the simulator and the real databases
answer the same id with the same body.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import msgspec

from carebench.backends.records import patient_id_for, synthetic_clinical
from carebench.models import (
    AllergyRecord,
    ClinicalRecord,
    ConditionRecord,
    MedicationRecord,
    Patient,
)

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
    # The detail of each list row, read by FHIR $everything (one row per list row).
    """CREATE TABLE IF NOT EXISTS condition_details (
        patient_id TEXT NOT NULL,
        position INTEGER NOT NULL,
        clinical_status TEXT NOT NULL,
        onset_date TEXT NOT NULL,
        recorded_date TEXT NOT NULL,
        PRIMARY KEY (patient_id, position),
        FOREIGN KEY (patient_id, position) REFERENCES diagnoses (patient_id, position)
    )""",
    """CREATE TABLE IF NOT EXISTS medication_details (
        patient_id TEXT NOT NULL,
        position INTEGER NOT NULL,
        status TEXT NOT NULL,
        started TEXT NOT NULL,
        PRIMARY KEY (patient_id, position),
        FOREIGN KEY (patient_id, position) REFERENCES medications (patient_id, position)
    )""",
    """CREATE TABLE IF NOT EXISTS allergy_details (
        patient_id TEXT NOT NULL,
        position INTEGER NOT NULL,
        criticality TEXT NOT NULL,
        reaction TEXT NOT NULL,
        recorded_date TEXT NOT NULL,
        PRIMARY KEY (patient_id, position),
        FOREIGN KEY (patient_id, position) REFERENCES allergies (patient_id, position)
    )""",
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
#: list table -> (its detail table, the detail columns in the order of the record's fields).
DETAIL_TABLES = {
    "diagnoses": ("condition_details", ("clinical_status", "onset_date", "recorded_date")),
    "medications": ("medication_details", ("status", "started")),
    "allergies": ("allergy_details", ("criticality", "reaction", "recorded_date")),
}


@dataclass(frozen=True, slots=True)
class PatientRows:
    """One patient as rows: the patients row and (patient_id, position, value) list rows."""

    patient: tuple[str, ...]
    diagnoses: list[tuple[str, int, str]]
    medications: list[tuple[str, int, str]]
    allergies: list[tuple[str, int, str]]
    #: (patient_id, position, *detail columns), named after their tables like the lists.
    condition_details: list[tuple[str | int, ...]]
    medication_details: list[tuple[str | int, ...]]
    allergy_details: list[tuple[str | int, ...]]


def seeded_ids(patients: int) -> list[str]:
    """The ids `db seed --patients N` loads: P00000 .. P<N-1>, plus EXAMPLE_ID."""
    ids = [patient_id_for(index) for index in range(patients)]
    return ids if EXAMPLE_ID in ids else [*ids, EXAMPLE_ID]


def rows_of(record: ClinicalRecord) -> PatientRows:
    patient = record.patient

    def listed(values: Sequence[str]) -> list[tuple[str, int, str]]:
        return [(patient.id, position, value) for position, value in enumerate(values)]

    def detailed(items: Sequence[msgspec.Struct]) -> list[tuple[str | int, ...]]:
        # A record's first field is the list row's value; the rest are the detail columns.
        return [
            (patient.id, position, *msgspec.structs.astuple(item)[1:])
            for position, item in enumerate(items)
        ]

    return PatientRows(
        tuple(getattr(patient, column) for column in PATIENT_COLUMNS),
        listed(patient.diagnosis_codes),
        listed(patient.medications),
        listed(patient.allergies),
        detailed(record.conditions),
        detailed(record.medications),
        detailed(record.allergies),
    )


def seed_rows(patients: int) -> Iterator[PatientRows]:
    """The rows of every seeded patient, in id order (deterministic: same N, same rows)."""
    for patient_id in seeded_ids(patients):
        yield rows_of(synthetic_clinical(patient_id))


def detail_source(table: str) -> tuple[list[str], str]:
    """For list `table`: its value and detail columns, and the FROM ... WHERE joining them for
    the patient aliased `p` (portable SQL, ordered by the caller on `l.position`)."""
    detail, columns = DETAIL_TABLES[table]
    values = [f"l.{LIST_TABLES[table]}", *(f"d.{column}" for column in columns)]
    source = (
        f"{table} AS l JOIN {detail} AS d "
        "ON d.patient_id = l.patient_id AND d.position = l.position WHERE l.patient_id = p.id"
    )
    return values, source


_DETAIL_DECODER = msgspec.json.Decoder(list[list[str]])


def clinical_from_row(row: Sequence[str], *details: str | None) -> ClinicalRecord:
    """A ClinicalRecord from a patients row (PATIENT_COLUMNS order) and, per list table in
    LIST_TABLES order, a JSON array of [value, *detail columns] rows in position order."""
    conditions, medications, allergies = (
        _DETAIL_DECODER.decode(text) if text else [] for text in details
    )
    patient = patient_from_row(
        row,
        [item[0] for item in conditions],
        [item[0] for item in medications],
        [item[0] for item in allergies],
    )
    return ClinicalRecord(
        patient,
        tuple(ConditionRecord(*item) for item in conditions),
        tuple(MedicationRecord(*item) for item in medications),
        tuple(AllergyRecord(*item) for item in allergies),
    )


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
