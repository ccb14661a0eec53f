"""The FHIR resources carebench builds, each validated by fhir.resources' R4B models."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from pydantic import ValidationError

from carebench.backends.dataset import seeded_ids
from carebench.backends.records import synthetic_clinical, synthetic_patient
from carebench.fhir import resources
from tests.fhir.validation import validate

#: Enough ids to meet every gender, status, criticality and list length the records use.
IDS = [*seeded_ids(200), "x", "a.b-C", "9" * 64]
BASE = "http://127.0.0.1:8080/fhir"


@pytest.mark.parametrize("patient_id", IDS)
def test_patient_validates_and_carries_the_record(patient_id: str) -> None:
    """A Patient validates and holds the record's id, MRN, name, gender and birth date."""
    record = synthetic_patient(patient_id)
    patient = json.loads(resources.encode_patient(record))
    validate(patient)
    assert patient["id"] == patient_id
    assert patient["identifier"][0]["value"] == record.medical_record_number
    assert patient["name"][0] == {
        "use": "official",
        "family": record.last_name,
        "given": [record.first_name],
    }
    assert (patient["gender"], patient["birthDate"]) == (record.gender, record.date_of_birth)


def test_search_bundle_has_total_self_link_and_one_entry_per_match() -> None:
    """A searchset Bundle: total, the self link as given, one match entry per patient."""
    patients = tuple(synthetic_patient(i) for i in IDS[:12])
    self_url = f"{BASE}/Patient?_id={','.join(IDS[:12])}"
    bundle = json.loads(resources.encode_search(patients, BASE, self_url))
    validate(bundle)
    assert bundle["type"] == "searchset" and bundle["total"] == 12
    assert bundle["link"] == [{"relation": "self", "url": self_url}]
    assert [entry["resource"]["id"] for entry in bundle["entry"]] == IDS[:12]
    assert [entry["fullUrl"] for entry in bundle["entry"]] == [
        f"{BASE}/Patient/{i}" for i in IDS[:12]
    ]
    assert {entry["search"]["mode"] for entry in bundle["entry"]} == {"match"}


def test_empty_search_bundle_validates() -> None:
    """No match: a valid Bundle with total 0 and no entries."""
    bundle = json.loads(resources.encode_search((), BASE, f"{BASE}/Patient?_id=nobody"))
    validate(bundle)
    assert bundle["total"] == 0 and bundle["entry"] == []


@pytest.mark.parametrize("patient_id", IDS)
def test_everything_bundle_validates_with_each_clinical_resource(patient_id: str) -> None:
    """$everything: the Patient, then one Condition per ICD-10-CM code, one
    MedicationStatement per medication and one AllergyIntolerance per allergy, all about
    the patient, each validated, with unique urn:uuid full URLs."""
    record = synthetic_clinical(patient_id)
    url = f"{BASE}/Patient/{patient_id}/$everything"
    bundle = json.loads(resources.encode_everything(record, BASE, url))
    validate(bundle)
    kinds = [entry["resource"]["resourceType"] for entry in bundle["entry"]]
    patient = record.patient
    assert kinds == [
        "Patient",
        *["Condition"] * len(patient.diagnosis_codes),
        *["MedicationStatement"] * len(patient.medications),
        *["AllergyIntolerance"] * len(patient.allergies),
    ]
    assert bundle["total"] == len(kinds)
    clinical = [entry["resource"] for entry in bundle["entry"][1:]]
    for resource in clinical:
        validate(resource)
        subject = resource.get("subject", resource.get("patient"))
        assert subject == {"reference": f"Patient/{patient_id}"}
    codes = [r["code"]["coding"][0] for r in clinical if r["resourceType"] == "Condition"]
    assert [c["code"] for c in codes] == list(patient.diagnosis_codes)
    assert {c["system"] for c in codes} <= {resources.ICD10_CM}
    assert all(c["display"] == resources.ICD10_DISPLAY[c["code"]] for c in codes)
    urls = [entry["fullUrl"] for entry in bundle["entry"][1:]]
    assert len(set(urls)) == len(urls)
    assert all(url == f"urn:uuid:{r['id']}" for url, r in zip(urls, clinical, strict=True))


def test_clinical_records_are_deterministic_and_plausible() -> None:
    """The same id gives the same clinical record (not only from the cache); dates fall
    between birth and the last visit, and a condition is recorded no earlier than its onset."""
    first = [synthetic_clinical(i) for i in IDS]
    synthetic_clinical.cache_clear()
    assert [synthetic_clinical(i) for i in IDS] == first
    for record in first:
        born = record.patient.date_of_birth
        last = record.patient.last_visit_date
        dates = [c.onset_date for c in record.conditions] + [m.started for m in record.medications]
        assert all(born <= day <= last for day in dates)
        assert all(c.onset_date <= c.recorded_date for c in record.conditions)
        assert [m.name for m in record.medications] == list(record.patient.medications)


@pytest.mark.parametrize("status", sorted(resources.ISSUE_CODES))
def test_operation_outcome_for_each_error_status(status: int) -> None:
    """Each error status has an OperationOutcome of the matching issue type."""
    outcome = json.loads(resources.encode_outcome(status, f"failed with {status}"))
    validate(outcome)
    assert outcome["issue"] == [
        {
            "severity": "error",
            "code": resources.ISSUE_CODES[status],
            "diagnostics": outcome["issue"][0]["diagnostics"],
        }
    ]
    assert outcome["issue"][0]["diagnostics"] == f"failed with {status}"


def test_capability_statement_lists_exactly_what_is_served() -> None:
    """CapabilityStatement: R4, JSON, and only Patient with read, search by _id and
    $everything."""
    today = dt.date.today().isoformat()
    statement = json.loads(resources.encode_capability_statement(today))
    validate(statement)
    assert statement["fhirVersion"] == "4.0.1" and statement["date"] == today
    (rest,) = statement["rest"]
    (patient,) = rest["resource"]
    assert patient["type"] == "Patient"
    assert [i["code"] for i in patient["interaction"]] == ["read", "search-type"]
    assert [p["name"] for p in patient["searchParam"]] == ["_id"]
    assert [o["name"] for o in patient["operation"]] == ["everything"]


@pytest.mark.parametrize(
    "broken",
    [
        {"birthDate": "1990-13-45"},
        {"gender": "robot"},
        {"favouriteColour": "blue"},
        {"name": "Ada"},
    ],
)
def test_validation_rejects_a_broken_patient(broken: dict[str, str]) -> None:
    """The validation above can fail: a bad date, an unbound code, an unknown field or a
    wrong shape is refused."""
    patient = json.loads(resources.encode_patient(synthetic_patient("P1"))) | broken
    with pytest.raises((ValidationError, AssertionError)):
        validate(patient)
