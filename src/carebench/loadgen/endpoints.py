"""What each load-test request asks the server for (`--endpoint`): its path and its lookup."""

from __future__ import annotations

from dataclasses import dataclass

from carebench.models import EVERYTHING, READ, SEARCH


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A request for one patient id: `prefix + id + suffix`; `lookup` is what an in-process
    run asks the pattern for instead."""

    prefix: str
    suffix: str
    lookup: str


ENDPOINTS = {
    "legacy": Endpoint("/api/v1/patients?id=", "", READ),
    "fhir-read": Endpoint("/fhir/Patient/", "", READ),
    "fhir-search": Endpoint("/fhir/Patient?_id=", "", SEARCH),
    "fhir-everything": Endpoint("/fhir/Patient/", "/$everything", EVERYTHING),
}
