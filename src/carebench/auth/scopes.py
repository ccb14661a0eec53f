"""SMART on FHIR scopes (v1 `.read` and v2 `.rs` spellings) and what each lookup needs.

A scope is `context/Resource.permissions`: context `patient` (only the patient the token
names, its `patient` claim), `user` or `system` (any patient); `Resource` a FHIR type or `*`;
permissions v1 `read`, `write`, `*` or v2 letters in `cruds` order (`rs`, `r`, `s`). Scopes
with v2 query parameters (`?category=...`) narrow access in ways carebench cannot enforce, so
they grant nothing, as do scopes carebench does not know (`openid`, `launch/patient`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from carebench.models import EVERYTHING, READ, SEARCH

#: The scope (beyond system-wide read) that opens /metrics, /health, /openapi.json and /debug/*
#: to clients that are not on loopback, so a Prometheus scraper needs no patient access.
OPS_SCOPE = "carebench.ops"

_SCOPE = re.compile(r"(patient|user|system)/(\*|[A-Z][A-Za-z]{0,63})\.(read|write|\*|c?r?u?d?s?)")
_V1 = {"read": frozenset("rs"), "write": frozenset("cud"), "*": frozenset("cruds")}

#: (resource type, action) pairs each lookup needs: r = read, s = search (SMART v2 letters;
#: a v1 `.read` grants both).
NEEDS: dict[str, tuple[tuple[str, str], ...]] = {
    READ: (("Patient", "r"),),
    SEARCH: (("Patient", "s"),),
    EVERYTHING: (
        ("Patient", "r"),
        ("Condition", "r"),
        ("MedicationStatement", "r"),
        ("AllergyIntolerance", "r"),
    ),
}

#: What a grant decides for a lookup.
DENY, PATIENT_ONLY, ALLOW = 0, 1, 2


@dataclass(frozen=True, slots=True)
class Permission:
    """One parsed scope: `patient/Patient.rs` -> ("patient", "Patient", {"r", "s"})."""

    context: str
    resource: str
    actions: frozenset[str]

    def covers(self, resource: str, action: str) -> bool:
        return action in self.actions and self.resource in ("*", resource)


def parse_scope(scope: str) -> Permission | None:
    """The permission a scope grants; None for one that grants nothing here."""
    match = _SCOPE.fullmatch(scope)
    if match is None or not match.group(3):
        return None
    context, resource, permissions = match.groups()
    actions = _V1.get(permissions) or frozenset(permissions)
    return Permission(context, resource, actions)


class Grant:
    """What a set of scopes allows; decisions are memoised per lookup (a cached token's
    repeated requests cost a dict lookup)."""

    __slots__ = ("_decisions", "ops", "permissions", "scopes")

    def __init__(self, scopes: Iterable[str]) -> None:
        self.scopes = tuple(scopes)
        parsed = (parse_scope(scope) for scope in self.scopes)
        self.permissions = tuple(permission for permission in parsed if permission is not None)
        #: Whether the operational endpoints are open to this credential from anywhere.
        self.ops = OPS_SCOPE in self.scopes or any(
            p.context == "system" and p.covers("*", "r") and p.resource == "*"
            for p in self.permissions
        )
        self._decisions: dict[str, int] = {}

    def decide(self, lookup: str) -> int:
        """ALLOW, PATIENT_ONLY (only for the token's own patient) or DENY."""
        decision = self._decisions.get(lookup)
        if decision is None:
            decision = self._decisions[lookup] = min(
                self._decide_one(resource, action) for resource, action in NEEDS[lookup]
            )
        return decision

    def _decide_one(self, resource: str, action: str) -> int:
        contexts = {p.context for p in self.permissions if p.covers(resource, action)}
        if contexts - {"patient"}:
            return ALLOW
        return PATIENT_ONLY if contexts else DENY


def needed_scopes(lookup: str) -> str:
    """The v1 scopes a lookup needs, as a 403's `scope` attribute and message say them."""
    return " ".join(f"user/{resource}.read" for resource, _ in NEEDS[lookup])
