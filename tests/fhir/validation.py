"""Validation of carebench's FHIR output with a real FHIR model library (fhir.resources, R4B
models: the same as R4 for the resources carebench serves).

The library checks structure, types, cardinality and formats (dates, ids, URIs) but not
required code bindings, so the codes carebench emits are also checked against their R4
value sets here.
"""

from __future__ import annotations

import json
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from fhir_core.fhirabstractmodel import FHIRAbstractModel

#: Required bindings (R4): resource type -> field -> allowed codes.
REQUIRED_CODES: dict[str, dict[str, set[str]]] = {
    "Patient": {"gender": {"male", "female", "other", "unknown"}},
    "MedicationStatement": {
        "status": {
            "active",
            "completed",
            "entered-in-error",
            "intended",
            "stopped",
            "on-hold",
            "unknown",
            "not-taken",
        }
    },
    "AllergyIntolerance": {"criticality": {"low", "high", "unable-to-assess"}},
    "Bundle": {"type": {"searchset"}},
    "CapabilityStatement": {"status": {"active"}, "kind": {"instance"}},
}
ISSUE_TYPES = {
    "invalid",
    "login",
    "forbidden",
    "not-found",
    "not-supported",
    "throttled",
    "exception",
    "transient",
    "timeout",
}
CONDITION_CLINICAL = {"active", "recurrence", "relapse", "inactive", "remission", "resolved"}


def validate(body: bytes | dict[str, Any]) -> FHIRAbstractModel:
    """The body parsed by the model of its resourceType; AssertionError or a pydantic
    ValidationError when it is not a valid FHIR resource."""
    data = json.loads(body) if isinstance(body, bytes) else body
    model = get_fhir_model_class(data["resourceType"])
    resource = model.model_validate(data)
    _check_codes(data)
    for entry in data.get("entry", []):
        _check_codes(entry["resource"])
        assert entry["search"]["mode"] in {"match", "include"}, entry["search"]
    return resource


def _check_codes(data: dict[str, Any]) -> None:
    kind = data["resourceType"]
    for field, allowed in REQUIRED_CODES.get(kind, {}).items():
        assert data[field] in allowed, f"{kind}.{field} = {data[field]!r}"
    if kind == "OperationOutcome":
        for issue in data["issue"]:
            assert issue["severity"] in {"fatal", "error", "warning", "information"}, issue
            assert issue["code"] in ISSUE_TYPES, issue
    if kind == "Condition":
        assert data["clinicalStatus"]["coding"][0]["code"] in CONDITION_CLINICAL, data
