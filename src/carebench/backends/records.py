"""Deterministic synthetic patient records: the same id always yields the same record.

All names and codes are invented or public code lists; no real patient data is used.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
from functools import lru_cache

from carebench.models import (
    AllergyRecord,
    ClinicalRecord,
    ConditionRecord,
    MedicationRecord,
    Patient,
)

FIRST_NAMES = (
    "Ada",
    "Ben",
    "Chloe",
    "Dev",
    "Elena",
    "Farid",
    "Grace",
    "Hiro",
    "Ines",
    "Jonas",
    "Kira",
    "Luis",
    "Maya",
    "Noah",
    "Olga",
    "Priya",
    "Quinn",
    "Rosa",
    "Sami",
    "Tara",
)
LAST_NAMES = (
    "Abbott",
    "Barros",
    "Chen",
    "Dubois",
    "Eriksen",
    "Fischer",
    "Garcia",
    "Haddad",
    "Ivanova",
    "Jensen",
    "Kowalski",
    "Larsen",
    "Moreau",
    "Nakamura",
    "Okafor",
    "Patel",
)
ICD10_CODES = (
    "E11.9",
    "I10",
    "J45.909",
    "M54.5",
    "F41.1",
    "K21.9",
    "E78.5",
    "N39.0",
    "J06.9",
    "I48.91",
    "G43.909",
    "E03.9",
    "M17.11",
    "R51.9",
    "L40.0",
    "D64.9",
)
MEDICATIONS = (
    "Metformin 500mg",
    "Lisinopril 10mg",
    "Atorvastatin 20mg",
    "Albuterol inhaler",
    "Sertraline 50mg",
    "Omeprazole 20mg",
    "Levothyroxine 50mcg",
    "Amlodipine 5mg",
    "Apixaban 5mg",
    "Ibuprofen 400mg",
    "Sumatriptan 50mg",
    "Ferrous sulfate 325mg",
)
ALLERGIES = ("Penicillin", "Peanuts", "Latex", "Sulfa drugs", "Shellfish", "Aspirin", "Pollen")
PHYSICIANS = (
    "Dr. Amara Osei",
    "Dr. Bruno Lindqvist",
    "Dr. Carmen Ortiz",
    "Dr. Daniel Kim",
    "Dr. Esther Novak",
    "Dr. Felix Mbeki",
    "Dr. Gita Raman",
    "Dr. Henrik Vos",
)
INSURERS = (
    "Northwind Health",
    "Contoso Care",
    "Fabrikam Mutual",
    "Tailspin Assurance",
    "Litware Health Plan",
    "Medicaid (synthetic)",
    "Medicare (synthetic)",
)
REACTIONS = ("Hives", "Rash", "Wheezing", "Swelling", "Nausea", "Anaphylaxis")
CONDITION_STATUSES = ("active", "active", "active", "resolved")
MEDICATION_STATUSES = ("active", "active", "completed", "stopped")
CRITICALITIES = ("low", "high", "unable-to-assess")
BLOOD_TYPES = ("O+", "O-", "A+", "A-", "B+", "B-", "AB+", "AB-")
GENDERS = ("female", "male", "other", "unknown")

_EPOCH = dt.date(1930, 1, 1)
_LAST_VISIT_START = dt.date(2024, 1, 1)


def patient_id_for(index: int) -> str:
    """The id of the index-th synthetic patient: P00000, P00001, ..."""
    return f"P{index:05d}"


def _seed_for(patient_id: str) -> int:
    # A stable digest rather than hash(): str hashing is salted per process.
    return int.from_bytes(hashlib.blake2b(patient_id.encode(), digest_size=8).digest(), "big")


def _day_after(start: dt.date, rng: random.Random, span_days: int) -> str:
    return (start + dt.timedelta(days=rng.randrange(span_days))).isoformat()


@lru_cache(maxsize=8192)
def synthetic_patient(patient_id: str) -> Patient:
    """The synthetic record for `patient_id` (cached: records are immutable)."""
    rng = random.Random(_seed_for(patient_id))
    return Patient(
        id=patient_id,
        medical_record_number=f"MRN-{rng.randrange(10**8):08d}",
        first_name=rng.choice(FIRST_NAMES),
        last_name=rng.choice(LAST_NAMES),
        date_of_birth=_day_after(_EPOCH, rng, 365 * 90),
        gender=rng.choice(GENDERS),
        diagnosis_codes=tuple(rng.sample(ICD10_CODES, rng.randint(1, 4))),
        medications=tuple(rng.sample(MEDICATIONS, rng.randint(0, 4))),
        allergies=tuple(rng.sample(ALLERGIES, rng.randint(0, 2))),
        last_visit_date=_day_after(_LAST_VISIT_START, rng, 900),
        primary_physician=rng.choice(PHYSICIANS),
        insurance_provider=rng.choice(INSURERS),
        blood_type=rng.choice(BLOOD_TYPES),
    )


@lru_cache(maxsize=8192)
def synthetic_clinical(patient_id: str) -> ClinicalRecord:
    """The detail of `synthetic_patient(patient_id)`'s diagnoses, medications and allergies:
    statuses and dates drawn from their own stream, so the patient record is unchanged."""
    patient = synthetic_patient(patient_id)
    rng = random.Random(_seed_for(f"{patient_id}/clinical"))
    born = dt.date.fromisoformat(patient.date_of_birth)
    last_visit = dt.date.fromisoformat(patient.last_visit_date)

    def day() -> str:
        return _day_after(born, rng, max(1, (last_visit - born).days + 1))

    return ClinicalRecord(
        patient=patient,
        conditions=tuple(
            ConditionRecord(code, rng.choice(CONDITION_STATUSES), *sorted((day(), day())))
            for code in patient.diagnosis_codes
        ),
        medications=tuple(
            MedicationRecord(name, rng.choice(MEDICATION_STATUSES), day())
            for name in patient.medications
        ),
        allergies=tuple(
            AllergyRecord(substance, rng.choice(CRITICALITIES), rng.choice(REACTIONS), day())
            for substance in patient.allergies
        ),
    )
