"""SMART on FHIR scopes: both spellings, and what each lookup needs."""

from __future__ import annotations

import pytest

from carebench.auth.scopes import (
    ALLOW,
    DENY,
    PATIENT_ONLY,
    Grant,
    Permission,
    needed_scopes,
    parse_scope,
)
from carebench.models import EVERYTHING, READ, SEARCH


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        ("patient/Patient.read", Permission("patient", "Patient", frozenset("rs"))),
        ("user/Patient.read", Permission("user", "Patient", frozenset("rs"))),
        ("system/*.read", Permission("system", "*", frozenset("rs"))),
        ("user/*.*", Permission("user", "*", frozenset("cruds"))),
        ("user/Patient.write", Permission("user", "Patient", frozenset("cud"))),
        ("patient/Patient.rs", Permission("patient", "Patient", frozenset("rs"))),
        ("system/Condition.r", Permission("system", "Condition", frozenset("r"))),
        ("user/*.cruds", Permission("user", "*", frozenset("cruds"))),
    ],
)
def test_v1_and_v2_spellings_parse(scope: str, expected: Permission) -> None:
    """v1 .read/.write/.* and v2 letters in cruds order become the same permissions."""
    assert parse_scope(scope) == expected


@pytest.mark.parametrize(
    "scope",
    [
        "openid",
        "launch/patient",
        "user/Patient.",  # no permission
        "user/Patient.sr",  # v2 letters out of order
        "patient/Observation.rs?category=laboratory",  # granular: not enforceable here
        "admin/Patient.read",
        "user/patient.read",  # resource types are capitalised
    ],
)
def test_scopes_that_grant_nothing(scope: str) -> None:
    """Unknown, malformed and granular scopes are ignored, not read loosely."""
    assert parse_scope(scope) is None
    assert Grant([scope]).decide(READ) == DENY


@pytest.mark.parametrize(
    ("scopes", "lookup", "decision"),
    [
        ("user/Patient.read", READ, ALLOW),
        ("user/Patient.read", SEARCH, ALLOW),
        ("user/Patient.read", EVERYTHING, DENY),
        ("user/Patient.r", READ, ALLOW),
        ("user/Patient.r", SEARCH, DENY),  # v2: search is its own letter
        ("user/Patient.rs", SEARCH, ALLOW),
        ("user/Patient.write", READ, DENY),
        ("user/Condition.read", READ, DENY),
        ("system/*.read", EVERYTHING, ALLOW),
        ("user/*.rs", EVERYTHING, ALLOW),
        (
            "user/Patient.read user/Condition.read user/MedicationStatement.read "
            "user/AllergyIntolerance.read",
            EVERYTHING,
            ALLOW,
        ),
        ("user/Patient.read user/Condition.read", EVERYTHING, DENY),
        ("patient/Patient.read", READ, PATIENT_ONLY),
        ("patient/*.read", EVERYTHING, PATIENT_ONLY),
        ("patient/*.read user/Patient.read", EVERYTHING, PATIENT_ONLY),
        ("patient/Patient.read user/Patient.read", READ, ALLOW),
        ("carebench.ops", READ, DENY),
    ],
)
def test_what_each_lookup_needs(scopes: str, lookup: str, decision: int) -> None:
    """Patient read for reads, search for searches, four resource types for $everything;
    patient/ scopes only for the token's own patient."""
    assert Grant(scopes.split()).decide(lookup) == decision


@pytest.mark.parametrize(
    ("scopes", "ops"),
    [
        ("system/*.read", True),
        ("system/*.rs", True),
        ("carebench.ops", True),
        ("user/*.read", False),
        ("system/Patient.read", False),
        ("patient/*.read", False),
    ],
)
def test_which_grants_open_the_operational_endpoints(scopes: str, ops: bool) -> None:
    """Only system-wide read or the carebench.ops scope opens /metrics and the like."""
    assert Grant(scopes.split()).ops is ops


def test_a_decision_is_memoised_per_lookup() -> None:
    """A cached token's repeated request is decided by one dict lookup."""
    grant = Grant(["user/Patient.read"])
    assert grant.decide(READ) == ALLOW
    grant.permissions = ()  # were the decision made again, it would now be DENY
    assert grant.decide(READ) == ALLOW
    assert grant.decide(SEARCH) == DENY


def test_needed_scopes_name_every_resource_type() -> None:
    """A 403 says what to ask for: all four types for $everything."""
    assert needed_scopes(EVERYTHING).split() == [
        "user/Patient.read",
        "user/Condition.read",
        "user/MedicationStatement.read",
        "user/AllergyIntolerance.read",
    ]
