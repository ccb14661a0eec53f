"""FHIR R4 resources for carebench's records, as msgspec Structs encoded straight to JSON.

Only what carebench serves: Patient, Condition, MedicationStatement, AllergyIntolerance,
Bundle (searchset), CapabilityStatement and OperationOutcome. Structs rather than dicts: a
typed shape, and msgspec encodes them without building intermediate objects (a FHIR read
costs about what the legacy read does; benchmarks/fhir_cost.py measures it).
"""

from __future__ import annotations

import hashlib

import msgspec

from carebench import __version__
from carebench.models import (
    AllergyRecord,
    ClinicalRecord,
    ConditionRecord,
    MedicationRecord,
    Patient,
)

FHIR_VERSION = "4.0.1"
CONTENT_TYPE = b"application/fhir+json; fhirVersion=4.0"
ICD10_CM = "http://hl7.org/fhir/sid/icd-10-cm"
_TERMINOLOGY = "http://terminology.hl7.org/CodeSystem/"
MRN_SYSTEM = "urn:carebench:mrn"
#: The most ids one `_id` search may name: a search is one backend query, kept bounded.
MAX_SEARCH_IDS = 100

#: Display names of the ICD-10-CM codes the synthetic records use (public code list).
ICD10_DISPLAY = {
    "E11.9": "Type 2 diabetes mellitus without complications",
    "I10": "Essential (primary) hypertension",
    "J45.909": "Unspecified asthma, uncomplicated",
    "M54.5": "Low back pain",
    "F41.1": "Generalized anxiety disorder",
    "K21.9": "Gastro-esophageal reflux disease without esophagitis",
    "E78.5": "Hyperlipidemia, unspecified",
    "N39.0": "Urinary tract infection, site not specified",
    "J06.9": "Acute upper respiratory infection, unspecified",
    "I48.91": "Unspecified atrial fibrillation",
    "G43.909": "Migraine, unspecified, not intractable, without status migrainosus",
    "E03.9": "Hypothyroidism, unspecified",
    "M17.11": "Unilateral primary osteoarthritis, right knee",
    "R51.9": "Headache, unspecified",
    "L40.0": "Psoriasis vulgaris",
    "D64.9": "Anemia, unspecified",
}


class Coding(msgspec.Struct, omit_defaults=True, gc=False):
    system: str
    code: str
    display: str | None = None


class CodeableConcept(msgspec.Struct, omit_defaults=True, gc=False):
    coding: list[Coding] | None = None
    text: str | None = None


class Reference(msgspec.Struct, omit_defaults=True, gc=False):
    reference: str | None = None
    display: str | None = None


class Identifier(msgspec.Struct, gc=False):
    type: CodeableConcept
    system: str
    value: str


class HumanName(msgspec.Struct, gc=False):
    use: str
    family: str
    given: list[str]


class Period(msgspec.Struct, gc=False):
    start: str


class Reaction(msgspec.Struct, gc=False):
    manifestation: list[CodeableConcept]


class PatientResource(msgspec.Struct, tag_field="resourceType", tag="Patient", gc=False):
    id: str
    identifier: list[Identifier]
    name: list[HumanName]
    gender: str
    birthDate: str
    generalPractitioner: list[Reference]


class ConditionResource(msgspec.Struct, tag_field="resourceType", tag="Condition", gc=False):
    id: str
    clinicalStatus: CodeableConcept
    verificationStatus: CodeableConcept
    category: list[CodeableConcept]
    code: CodeableConcept
    subject: Reference
    onsetDateTime: str
    recordedDate: str


class MedicationStatementResource(
    msgspec.Struct, tag_field="resourceType", tag="MedicationStatement", gc=False
):
    id: str
    status: str
    medicationCodeableConcept: CodeableConcept
    subject: Reference
    effectivePeriod: Period


class AllergyIntoleranceResource(
    msgspec.Struct, tag_field="resourceType", tag="AllergyIntolerance", gc=False
):
    id: str
    clinicalStatus: CodeableConcept
    verificationStatus: CodeableConcept
    criticality: str
    code: CodeableConcept
    patient: Reference
    recordedDate: str
    reaction: list[Reaction]


Resource = (
    PatientResource | ConditionResource | MedicationStatementResource | AllergyIntoleranceResource
)


class BundleSearch(msgspec.Struct, gc=False):
    mode: str


class BundleEntry(msgspec.Struct, gc=False):
    fullUrl: str
    resource: Resource
    search: BundleSearch


class BundleLink(msgspec.Struct, gc=False):
    relation: str
    url: str


class Bundle(msgspec.Struct, tag_field="resourceType", tag="Bundle", omit_defaults=True, gc=False):
    type: str
    link: list[BundleLink]
    entry: list[BundleEntry]
    total: int | None = None


class Issue(msgspec.Struct, gc=False):
    severity: str
    code: str
    diagnostics: str


class OperationOutcome(msgspec.Struct, tag_field="resourceType", tag="OperationOutcome"):
    issue: list[Issue]


_MATCH = BundleSearch("match")
_INCLUDE = BundleSearch("include")
_MRN_TYPE = CodeableConcept([Coding(f"{_TERMINOLOGY}v2-0203", "MR", "Medical record number")])
_CONFIRMED_CONDITION = CodeableConcept([Coding(f"{_TERMINOLOGY}condition-ver-status", "confirmed")])
_PROBLEM_LIST = [
    CodeableConcept([Coding(f"{_TERMINOLOGY}condition-category", "problem-list-item")])
]
_CONFIRMED_ALLERGY = CodeableConcept(
    [Coding(f"{_TERMINOLOGY}allergyintolerance-verification", "confirmed")]
)
_ACTIVE_ALLERGY = CodeableConcept([Coding(f"{_TERMINOLOGY}allergyintolerance-clinical", "active")])
_CONDITION_STATUS = {
    status: CodeableConcept([Coding(f"{_TERMINOLOGY}condition-clinical", status)])
    for status in ("active", "recurrence", "relapse", "inactive", "remission", "resolved")
}

_encoder = msgspec.json.Encoder()


def patient_resource(patient: Patient) -> PatientResource:
    """The FHIR Patient for a record (blood type, insurer and last visit have resources of
    their own in FHIR, Observation, Coverage and Encounter, which carebench does not serve)."""
    return PatientResource(
        id=patient.id,
        identifier=[Identifier(_MRN_TYPE, MRN_SYSTEM, patient.medical_record_number)],
        name=[HumanName("official", patient.last_name, [patient.first_name])],
        gender=patient.gender,
        birthDate=patient.date_of_birth,
        generalPractitioner=[Reference(display=patient.primary_physician)],
    )


def _clinical_id(patient_id: str, kind: str, position: int) -> str:
    """A UUID named by (patient id, resource type, position): RFC 9562's version 8 over a
    BLAKE2b digest, 4x cheaper than uuid5 (SHA-1 and a UUID object), same everywhere."""
    name = f"{patient_id}/{kind}/{position}".encode()
    digest = bytearray(hashlib.blake2b(name, digest_size=16).digest())
    digest[6] = (digest[6] & 0x0F) | 0x80  # version 8
    digest[8] = (digest[8] & 0x3F) | 0x80  # the RFC variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def condition_resource(patient_id: str, position: int, item: ConditionRecord) -> ConditionResource:
    display = ICD10_DISPLAY.get(item.icd10_code)
    return ConditionResource(
        id=_clinical_id(patient_id, "Condition", position),
        clinicalStatus=_CONDITION_STATUS[item.clinical_status],
        verificationStatus=_CONFIRMED_CONDITION,
        category=_PROBLEM_LIST,
        code=CodeableConcept([Coding(ICD10_CM, item.icd10_code, display)], display),
        subject=Reference(f"Patient/{patient_id}"),
        onsetDateTime=item.onset_date,
        recordedDate=item.recorded_date,
    )


def medication_resource(
    patient_id: str, position: int, item: MedicationRecord
) -> MedicationStatementResource:
    return MedicationStatementResource(
        id=_clinical_id(patient_id, "MedicationStatement", position),
        status=item.status,
        medicationCodeableConcept=CodeableConcept(text=item.name),
        subject=Reference(f"Patient/{patient_id}"),
        effectivePeriod=Period(item.started),
    )


def allergy_resource(
    patient_id: str, position: int, item: AllergyRecord
) -> AllergyIntoleranceResource:
    return AllergyIntoleranceResource(
        id=_clinical_id(patient_id, "AllergyIntolerance", position),
        clinicalStatus=_ACTIVE_ALLERGY,
        verificationStatus=_CONFIRMED_ALLERGY,
        criticality=item.criticality,
        code=CodeableConcept(text=item.substance),
        patient=Reference(f"Patient/{patient_id}"),
        recordedDate=item.recorded_date,
        reaction=[Reaction([CodeableConcept(text=item.reaction)])],
    )


def encode_patient(patient: Patient) -> bytes:
    """`GET /fhir/Patient/{id}`'s body."""
    return _encoder.encode(patient_resource(patient))


def encode_search(patients: tuple[Patient, ...], base: str, self_url: str) -> bytes:
    """A searchset Bundle with one match entry per patient; `base` is the FHIR base URL."""
    entries = [
        BundleEntry(f"{base}/Patient/{patient.id}", patient_resource(patient), _MATCH)
        for patient in patients
    ]
    return _encoder.encode(
        Bundle("searchset", [BundleLink("self", self_url)], entries, len(entries))
    )


def encode_everything(record: ClinicalRecord, base: str, self_url: str) -> bytes:
    """`$everything`'s searchset Bundle: the Patient (match), then its Conditions,
    MedicationStatements and AllergyIntolerances (include, with urn:uuid full URLs)."""
    patient_id = record.patient.id
    entries = [
        BundleEntry(f"{base}/Patient/{patient_id}", patient_resource(record.patient), _MATCH)
    ]
    clinical: list[Resource] = [
        *(condition_resource(patient_id, n, item) for n, item in enumerate(record.conditions)),
        *(medication_resource(patient_id, n, item) for n, item in enumerate(record.medications)),
        *(allergy_resource(patient_id, n, item) for n, item in enumerate(record.allergies)),
    ]
    entries.extend(BundleEntry(f"urn:uuid:{item.id}", item, _INCLUDE) for item in clinical)
    return _encoder.encode(
        Bundle("searchset", [BundleLink("self", self_url)], entries, len(entries))
    )


#: HTTP status -> the OperationOutcome issue type (https://hl7.org/fhir/R4/valueset-issue-type.html).
ISSUE_CODES = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    429: "throttled",
    500: "exception",
    503: "transient",
    504: "timeout",
}


def encode_outcome(status: int, diagnostics: str) -> bytes:
    """An OperationOutcome with one error issue whose type matches the HTTP status."""
    issue = Issue("error", ISSUE_CODES.get(status, "exception"), diagnostics)
    return _encoder.encode(OperationOutcome([issue]))


def encode_capability_statement(date: str) -> bytes:
    """`GET /fhir/metadata`: exactly what is served (Patient read, search by `_id`,
    `$everything`), as a JSON document; `date` is when this server started (YYYY-MM-DD)."""
    patient = {
        "type": "Patient",
        "interaction": [{"code": "read"}, {"code": "search-type"}],
        "searchParam": [
            {
                "name": "_id",
                "definition": "http://hl7.org/fhir/SearchParameter/Resource-id",
                "type": "token",
                "documentation": f"Comma-separated ids, at most {MAX_SEARCH_IDS}.",
            }
        ],
        "operation": [
            {
                "name": "everything",
                "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything",
            }
        ],
    }
    return _encoder.encode(
        {
            "resourceType": "CapabilityStatement",
            "status": "active",
            "date": date,
            "kind": "instance",
            "software": {"name": "carebench", "version": __version__},
            "fhirVersion": FHIR_VERSION,
            "format": ["application/fhir+json", "json"],
            "rest": [{"mode": "server", "resource": [patient]}],
        }
    )
