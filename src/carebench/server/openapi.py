"""The OpenAPI 3.1 document of the HTTP API, served at `GET /openapi.json`.

Derived from the code wherever it can be, so it cannot drift silently: msgspec builds the body
schemas from the Structs and TypedDicts the handlers return (every object closed with
`additionalProperties: false`, so an undocumented field is a contract failure); the patient
id, request id and priority rules come from the validators' own constants; and the app
builds its document from its routing table, failing at construction for a route this module
does not describe. tests/reliability/test_contract.py fuzzes a live server against it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any, Literal, TypedDict

import msgspec

from carebench import __version__
from carebench.audit.trail import AuditStats
from carebench.auth.gate import OPEN_PATHS
from carebench.backends.base import BackendHealth
from carebench.fhir import api as fhir_api
from carebench.fhir import resources as fhir
from carebench.metrics.document import MetricsDocument
from carebench.metrics.processes import GroupDocument
from carebench.metrics.prometheus import CONTENT_TYPE as PROMETHEUS_CONTENT_TYPE
from carebench.models import PATIENT_ID_CHARACTERS, PATIENT_ID_MAX_LENGTH, PRIORITIES
from carebench.responses import ErrorResponse, PatientResponse
from carebench.server.http import REQUEST_ID_SYNTAX

OPENAPI_PATH = "/openapi.json"
LIVE_PATH = "/health/live"
READY_PATH = "/health/ready"
PROFILE_PATH = "/debug/profile"
#: The formats of /metrics (the app's `?format=` values; JSON when absent).
METRICS_FORMATS = ("json", "prometheus")

JSON = "application/json"
#: What the FHIR routes answer with, parameter included (R4's MIME type parameter).
FHIR_JSON = fhir.CONTENT_TYPE.decode()
SCHEMAS = "#/components/schemas/{name}"
#: `utc_timestamp()`: RFC 3339, UTC, microseconds.
TIMESTAMP = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z$"


class HealthDocument(TypedDict):
    """GET /health: from counters only (it never queries the database), always 200."""

    status: Literal["healthy", "degraded"]
    pattern: str
    uptime_seconds: float
    version: str
    backend: BackendHealth


#: GET /health/ready's status: 200 when ready, 503 for the others.
ReadinessStatus = Literal["ready", "starting", "draining", "backend_down", "audit_failed"]


class LivenessDocument(TypedDict):
    """GET /health/live: the process runs and its event loop answers; always 200."""

    status: Literal["live"]
    uptime_seconds: float


class ReadinessDocument(TypedDict):
    """GET /health/ready: whether to send this server traffic (200 ready, else 503)."""

    #: starting (before the backend and pattern are up), draining (after SIGTERM or SIGINT),
    #: backend_down (a --faults outage, a database that cannot be reached), audit_failed
    #: (the --audit-log sink failed: patient requests are refused).
    status: ReadinessStatus
    pattern: str
    #: The backend's health status (healthy, degraded or down), as in GET /health.
    backend: str


class IndexDocument(TypedDict):
    """GET /: the server's name, version and pattern, and a curl command per endpoint."""

    name: str
    version: str
    pattern: str
    endpoints: dict[str, str]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": SCHEMAS.format(name=name)}


def _schemas() -> dict[str, Any]:
    bodies = (
        PatientResponse,
        ErrorResponse,
        HealthDocument,
        LivenessDocument,
        ReadinessDocument,
        IndexDocument,
        MetricsDocument,
        GroupDocument,
        AuditStats,
        fhir.PatientResource,
        fhir.Bundle,
        fhir.OperationOutcome,
    )
    _, schemas = msgspec.json.schema_components(bodies, ref_template=SCHEMAS)
    for schema in schemas.values():
        if "properties" in schema:
            schema["additionalProperties"] = False
    schemas["RequestId"] = {"type": "string", "pattern": f"^{REQUEST_ID_SYNTAX.pattern}$"}
    # The envelopes' defaults exist for pooling; on the wire every field is always there.
    for name, success in (("PatientResponse", True), ("ErrorResponse", False)):
        properties = schemas[name]["properties"]
        properties |= {
            "success": {"const": success},
            "timestamp": {"type": "string", "pattern": TIMESTAMP},
            "request_id": _ref("RequestId"),
        }
        schemas[name]["required"] = sorted(properties)
    schemas["PatientResponse"]["properties"]["patient"] = _ref("Patient")
    # Only with --audit-log (kept out of the TypedDict that the other documents build on).
    schemas["MetricsDocument"]["properties"]["audit"] = _ref("AuditStats")
    schemas["ErrorResponse"]["properties"]["error"] = {"type": "string", "minLength": 1}
    schemas["CapabilityStatement"] = {
        "type": "object",
        "description": "FHIR R4 CapabilityStatement: Patient read, search by _id, $everything.",
        "required": ["resourceType", "status", "date", "kind", "fhirVersion", "format", "rest"],
        "properties": {"resourceType": {"const": "CapabilityStatement"}},
    }
    return schemas


#: On every response, errors included.
RESPONSE_HEADERS = {
    "X-Request-ID": {
        "description": "The client's X-Request-ID when it is sane, else a generated one.",
        "required": True,
        "schema": _ref("RequestId"),
    }
}
_ALLOW = {"Allow": {"required": True, "schema": {"const": "GET"}}}
_RETRY_AFTER = {
    "Retry-After": {
        "description": "Whole seconds to wait before trying again.",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    }
}


def _json(description: str, schema: dict[str, Any], **headers: Any) -> dict[str, Any]:
    return {
        "description": description,
        "headers": {**RESPONSE_HEADERS, **headers},
        "content": {JSON: {"schema": schema}},
    }


def _fhir(description: str, schema: dict[str, Any], **headers: Any) -> dict[str, Any]:
    return {
        "description": f"{description} (FHIR R4 JSON; the header says fhirVersion=4.0)",
        "headers": {**RESPONSE_HEADERS, **headers},
        "content": {FHIR_JSON: {"schema": schema}},
    }


def _outcome(description: str, retry_after: bool = False) -> dict[str, Any]:
    """A FHIR error: an OperationOutcome whose issue type matches the status."""
    return _fhir(description, _ref("OperationOutcome"), **(_RETRY_AFTER if retry_after else {}))


def _error(description: str, retry_after: bool = False) -> dict[str, Any]:
    return _json(description, _ref("ErrorResponse"), **(_RETRY_AFTER if retry_after else {}))


_REQUEST_ID = {
    "name": "X-Request-ID",
    "in": "header",
    "description": "Echoed (header and body) when it matches RequestId; otherwise replaced.",
    "schema": {"type": "string"},
}


def _operation(operation_id: str, summary: str, responses: dict[str, Any], *parameters: Any) -> Any:
    return {
        "get": {
            "operationId": operation_id,
            "summary": summary,
            "parameters": [*parameters, _REQUEST_ID],
            "responses": responses,
        }
    }


def _path_items(profiling: bool) -> dict[str, Any]:
    """Every path the app serves -> its path item, in the index's order."""
    patient_id = {
        "name": "id",
        "in": "query",
        "required": True,
        "description": "A FHIR resource id.",
        # Length apart from the characters: a fuzzer tries the bounds of minLength/maxLength.
        "schema": {
            "type": "string",
            "minLength": 1,
            "maxLength": PATIENT_ID_MAX_LENGTH,
            "pattern": f"^{PATIENT_ID_CHARACTERS}+$",
        },
    }
    priority = {
        "name": "X-Request-Priority",
        "in": "header",
        "description": "The request's class: its deadline and its place in a queue.",
        "schema": {"type": "string", "enum": list(PRIORITIES), "default": "standard"},
    }
    metrics_format = {
        "name": "format",
        "in": "query",
        "schema": {"type": "string", "enum": list(METRICS_FORMATS), "default": "json"},
    }
    items = {
        "/api/v1/patients": _operation(
            "getPatient",
            "A patient record, through the server's concurrency pattern",
            {
                "200": _json("The record", _ref("PatientResponse")),
                "400": _error("Missing or invalid id, or an unknown X-Request-Priority"),
                "404": _error("No patient with this id"),
                "429": _error("Refused by the rate limit", retry_after=True),
                "500": _error("The database failed"),
                "503": _error(
                    "Refused by the pattern: queue full, limit reached, shed for more urgent"
                    " work, circuit open, shutting down",
                    retry_after=True,
                ),
                "504": _error("The request's deadline (its priority class's timeout) passed"),
            },
            patient_id,
            priority,
        ),
        "/health": _operation(
            "getHealth",
            "Health from counters only",
            {"200": _json("Health", _ref("HealthDocument"))},
        ),
        LIVE_PATH: _operation(
            "getLiveness",
            "Liveness probe: the process runs",
            {"200": _json("Alive", _ref("LivenessDocument"))},
        ),
        READY_PATH: _operation(
            "getReadiness",
            "Readiness probe: ready for traffic unless starting, draining or the backend is down",
            {
                "200": _json("Ready", _ref("ReadinessDocument")),
                "503": _json(
                    "Not ready: starting, draining, or the backend cannot be reached",
                    _ref("ReadinessDocument"),
                ),
            },
        ),
        "/metrics": _operation(
            "getMetrics",
            "Request counters, latencies and the server's state",
            {
                "200": {
                    "description": "JSON, or the Prometheus text format with ?format=prometheus",
                    "headers": RESPONSE_HEADERS,
                    "content": {
                        # One process's document, or with `serve --processes N` the
                        # group's (the same fields as totals, then each process).
                        JSON: {
                            "schema": {"oneOf": [_ref("MetricsDocument"), _ref("GroupDocument")]}
                        },
                        PROMETHEUS_CONTENT_TYPE: {"schema": {"type": "string"}},
                    },
                },
                "400": _error("Unknown format"),
            },
            metrics_format,
        ),
        "/": _operation(
            "getIndex", "The endpoints", {"200": _json("The index", _ref("IndexDocument"))}
        ),
        OPENAPI_PATH: _operation(
            "getOpenAPI",
            "This document",
            {
                "200": _json(
                    "OpenAPI 3.1", {"type": "object", "required": ["openapi", "info", "paths"]}
                )
            },
        ),
    }
    fhir_items = _fhir_items(priority)
    return items | fhir_items | ({PROFILE_PATH: _profile_item()} if profiling else {})


def _fhir_items(priority: dict[str, Any]) -> dict[str, Any]:
    """The FHIR R4 routes (carebench.fhir.api)."""
    fhir_id = f"{PATIENT_ID_CHARACTERS}{{1,{PATIENT_ID_MAX_LENGTH}}}"
    resource_id = {
        "name": "id",
        "in": "path",
        "required": True,
        "description": "A FHIR resource id.",
        "schema": {
            "type": "string",
            "minLength": 1,
            "maxLength": PATIENT_ID_MAX_LENGTH,
            "pattern": f"^{PATIENT_ID_CHARACTERS}+$",
        },
    }
    ids = {
        "name": "_id",
        "in": "query",
        "required": True,
        "description": f"Comma-separated ids, at most {fhir.MAX_SEARCH_IDS}; repeats count once.",
        "schema": {
            "type": "string",
            "pattern": f"^{fhir_id}(,{fhir_id}){{0,{fhir.MAX_SEARCH_IDS - 1}}}$",
        },
    }
    lookup_errors = {
        "429": _outcome("Refused by the rate limit", retry_after=True),
        "500": _outcome("The database failed"),
        "503": _outcome("Refused by the pattern (see getPatient)", retry_after=True),
        "504": _outcome("The request's deadline (its priority class's timeout) passed"),
    }
    read = {
        "200": _fhir("The Patient", _ref("PatientResource")),
        "400": _outcome("Invalid id, or an unknown X-Request-Priority"),
        "404": _outcome("No patient with this id (or no such path)"),
        **lookup_errors,
    }
    return {
        fhir_api.METADATA_PATH: _operation(
            "getFhirMetadata",
            "The FHIR CapabilityStatement: exactly what is served",
            {"200": _fhir("The CapabilityStatement", _ref("CapabilityStatement"))},
        ),
        fhir_api.PATIENT_PATH: _operation(
            "searchFhirPatient",
            "FHIR search by _id: one backend query, a searchset Bundle of the matches",
            {
                "200": _fhir("A searchset Bundle with total and a self link", _ref("Bundle")),
                "400": _outcome("Missing or invalid _id, another parameter, too many ids"),
                **lookup_errors,
            },
            ids,
            priority,
        ),
        f"{fhir_api.PATIENT_PATH}/{{id}}": _operation(
            "readFhirPatient",
            "FHIR read of a Patient, through the server's concurrency pattern",
            read,
            resource_id,
            priority,
        ),
        f"{fhir_api.PATIENT_PATH}/{{id}}/$everything": _operation(
            "fhirPatientEverything",
            "FHIR $everything: the Patient, its Conditions (ICD-10-CM), MedicationStatements"
            " and AllergyIntolerances, from one backend query",
            {**read, "200": _fhir("A searchset Bundle", _ref("Bundle"))},
            resource_id,
            priority,
        ),
    }


def _profile_item() -> Any:
    """GET /debug/profile, served with --enable-profiling only."""
    from carebench.server.profiling import FORMATS, MAX_SECONDS

    seconds = {
        "name": "seconds",
        "in": "query",
        "schema": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_SECONDS, "default": 5},
    }
    fmt = {"name": "format", "in": "query", "schema": {"type": "string", "enum": list(FORMATS)}}
    return _operation(
        "getProfile",
        "A CPU profile of the server's event loop for `seconds`",
        {
            "200": {
                "description": "pyinstrument's HTML report, or a speedscope JSON file",
                "headers": RESPONSE_HEADERS,
                "content": {
                    FORMATS["html"].decode(): {"schema": {"type": "string"}},
                    FORMATS["speedscope"].decode(): {"schema": {"type": "object"}},
                },
            },
            "400": _error("Invalid seconds or format"),
            "403": _error("Not a loopback client"),
            "409": _error("A profile is already being taken"),
        },
        seconds,
        fmt,
    )


#: The operations that read patient data: each needs a credential when access control is on.
PATIENT_OPERATIONS = frozenset(
    {"getPatient", "searchFhirPatient", "readFhirPatient", "fhirPatientEverything"}
)
SECURITY_SCHEMES = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "--auth jwt: a JWT signed by the --jwt-key, with iss --jwt-issuer, aud"
        " --jwt-audience and SMART on FHIR scopes (docs/api.md, Access control); --auth apikey:"
        " an API key.",
    },
    "apiKey": {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "--auth apikey: a key from the --api-keys file.",
    },
}
_WWW_AUTHENTICATE = {
    "WWW-Authenticate": {
        "description": 'Bearer realm="carebench", with error="invalid_token" (and'
        ' error_description) or error="insufficient_scope" (and the scope needed).',
        "required": True,
        "schema": {"type": "string", "pattern": "^Bearer realm="},
    }
}


def _secure(items: dict[str, Any], auth: str) -> None:
    """Security requirements and the 401/403 answers on every guarded operation."""
    required: list[dict[str, list[str]]] = [{"bearer": []}]
    if auth == "apikey":
        required.append({"apiKey": []})
    for path, item in items.items():
        operation = item["get"]
        patient_data = operation["operationId"] in PATIENT_OPERATIONS
        if not patient_data and (path in OPEN_PATHS or path == fhir_api.METADATA_PATH):
            continue
        error = _outcome if path.startswith(fhir_api.FHIR_BASE) else _error
        # {}: the operational endpoints need no credential from loopback clients.
        operation["security"] = required if patient_data else [{}, *required]
        responses = operation["responses"]
        unauthorised = error("No credential, or one refused (expired, wrong issuer ...)")
        unauthorised["headers"] |= _WWW_AUTHENTICATE
        responses["401"] = unauthorised
        forbidden = error(
            "The credential's scopes do not cover this request"
            if patient_data
            else "Not a loopback client, and no system/*.read or carebench.ops scope"
        )
        if "403" in responses:  # /debug/profile's own 403: loopback clients only
            forbidden["description"] += "; or " + responses["403"]["description"]
        else:
            forbidden["headers"] |= _WWW_AUTHENTICATE
        responses["403"] = forbidden


def document(routes: Iterable[str], auth: str = "none") -> dict[str, Any]:
    """The document of a server serving `routes` (paths) with access control `auth`;
    ValueError for a route not described."""
    served = set(routes)
    items = _path_items(profiling=PROFILE_PATH in served)
    undocumented = served - items.keys()
    if undocumented:
        raise ValueError(f"routes missing from carebench.server.openapi: {sorted(undocumented)}")
    if auth != "none":
        _secure(items, auth)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "carebench",
            "version": __version__,
            "description": (
                "Patient lookups through a concurrency pattern. Only GET is served: any other"
                " method gets 405 with `Allow: GET` (components/responses/MethodNotAllowed),"
                " an unknown path 404 (components/responses/NotFound); under /fhir both are"
                " OperationOutcomes (FhirMethodNotAllowed, FhirNotFound)."
            ),
        },
        "paths": {path: item for path, item in items.items() if path in served},
        "components": {
            "schemas": _schemas(),
            # Not any operation's: what every path answers outside the operations above.
            "responses": {
                "NotFound": _error("An unknown path (any method)"),
                "MethodNotAllowed": {
                    **_error("Any method but GET on a known path"),
                    "headers": {**RESPONSE_HEADERS, **_ALLOW},
                },
                "FhirNotFound": _outcome("An unknown path under /fhir (any method)"),
                "FhirMethodNotAllowed": {
                    **_outcome("Any method but GET on a FHIR path"),
                    "headers": {**RESPONSE_HEADERS, **_ALLOW},
                },
            },
            **({"securitySchemes": SECURITY_SCHEMES} if auth != "none" else {}),
        },
    }


@functools.cache
def encoded(routes: frozenset[str], auth: str = "none") -> bytes:
    """The document for `routes` and access control `auth` as JSON, encoded once each."""
    return msgspec.json.encode(document(routes, auth))
