"""The app behind access control: refusals before any backend work, bodies that say nothing
about the record, and the rule for the operational endpoints. Every response is checked
against the served OpenAPI document (tests/auth/conftest.py)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from carebench.auth.apikeys import load_api_keys
from carebench.auth.gate import AccessGate, is_loopback
from carebench.backends.records import synthetic_patient
from tests.auth.conftest import jwt_gate

PATIENT = "P00042"
LEGACY = f"/api/v1/patients?id={PATIENT}"
FHIR_READ = f"/fhir/Patient/{PATIENT}"
EVERYTHING = f"/fhir/Patient/{PATIENT}/$everything"
SEARCH = f"/fhir/Patient?_id={PATIENT},P00043"
REMOTE = ("10.1.2.3", 40000)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("path", [LEGACY, FHIR_READ, EVERYTHING, SEARCH])
async def test_no_credential_is_401_before_any_query(gated_app, signing_key, path) -> None:
    """No token: 401 with a Bearer challenge, and the backend never asked."""
    app, backend, client = await gated_app(jwt_gate(signing_key))
    response = await client.get(path)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="carebench"'
    assert backend.calls == []
    assert app.metrics.status_codes == {401: 1}


@pytest.mark.parametrize(
    "authorization", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer   ", "Token abc", "bearer"]
)
async def test_a_wrong_scheme_is_401(gated_app, signing_key, authorization) -> None:
    """Anything but `Bearer <token>` counts as no credential."""
    _, backend, client = await gated_app(jwt_gate(signing_key))
    response = await client.get(LEGACY, headers={"Authorization": authorization})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="carebench"'
    assert backend.calls == []


async def test_an_expired_token_is_401_invalid_token(gated_app, signing_key) -> None:
    """A refused token: error="invalid_token" and the reason, on legacy and FHIR alike."""
    _, backend, client = await gated_app(jwt_gate(signing_key))
    now = int(time.time())
    token = signing_key.token(exp=now - 3600, iat=now - 7200, nbf=now - 7200)
    for path in (LEGACY, FHIR_READ):
        response = await client.get(path, headers=bearer(token))
        assert response.status_code == 401
        challenge = response.headers["www-authenticate"]
        assert 'error="invalid_token"' in challenge
        assert 'error_description="the token has expired"' in challenge
    assert backend.calls == []


async def test_the_right_scope_reads(gated_app, signing_key) -> None:
    """user/Patient.read reads the legacy and FHIR Patient endpoints and searches."""
    _, backend, client = await gated_app(jwt_gate(signing_key, "jwks"))
    headers = bearer(signing_key.token("user/Patient.read"))
    for path in (LEGACY, FHIR_READ, SEARCH):
        assert (await client.get(path, headers=headers)).status_code == 200
    assert len(backend.calls) == 4  # the search asks for two ids


async def test_everything_needs_the_clinical_types_too(gated_app, signing_key) -> None:
    """$everything with Patient read only: 403 naming the scopes; with *.read: 200."""
    _, backend, client = await gated_app(jwt_gate(signing_key))
    response = await client.get(EVERYTHING, headers=bearer(signing_key.token("user/Patient.read")))
    assert response.status_code == 403
    challenge = response.headers["www-authenticate"]
    assert 'error="insufficient_scope"' in challenge
    assert "user/AllergyIntolerance.read" in challenge
    assert response.json()["issue"][0]["code"] == "forbidden"
    assert backend.calls == []
    allowed = await client.get(EVERYTHING, headers=bearer(signing_key.token("user/*.read")))
    assert allowed.status_code == 200
    assert allowed.json()["resourceType"] == "Bundle"


async def test_a_missing_scope_is_403(gated_app, signing_key) -> None:
    """A valid token without a read scope for Patient: 403 on every patient endpoint."""
    _, backend, client = await gated_app(jwt_gate(signing_key))
    headers = bearer(signing_key.token("user/Observation.read carebench.ops"))
    for path in (LEGACY, FHIR_READ, SEARCH, EVERYTHING):
        response = await client.get(path, headers=headers)
        assert response.status_code == 403, path
    assert backend.calls == []


async def test_patient_scopes_cover_only_the_tokens_patient(gated_app, signing_key) -> None:
    """patient/ scopes read the patient in the token's patient claim, and no other."""
    _, backend, client = await gated_app(jwt_gate(signing_key))
    own = bearer(signing_key.token("patient/*.read", patient=PATIENT))
    assert (await client.get(FHIR_READ, headers=own)).status_code == 200
    assert (await client.get(EVERYTHING, headers=own)).status_code == 200
    other = await client.get("/fhir/Patient/P00043", headers=own)
    assert other.status_code == 403
    assert (await client.get(SEARCH, headers=own)).status_code == 403  # P00043 among the ids
    unnamed = bearer(signing_key.token("patient/Patient.read"))
    assert (await client.get(FHIR_READ, headers=unnamed)).status_code == 403
    assert backend.calls == [PATIENT, PATIENT]


async def test_refusals_say_nothing_about_the_record(gated_app, signing_key) -> None:
    """401 and 403 bodies are the same for a patient that exists and one that does not, and
    name neither the patient nor anything in the record."""
    _, backend, client = await gated_app(jwt_gate(signing_key))
    record = synthetic_patient(PATIENT)
    secrets = {PATIENT, record.last_name, record.date_of_birth, record.medical_record_number}
    narrow = bearer(signing_key.token("user/Condition.read"))
    for headers in ({}, narrow, bearer("garbage")):
        bodies = []
        for patient_id in (PATIENT, "NOSUCH-1"):
            for path in (f"/api/v1/patients?id={patient_id}", f"/fhir/Patient/{patient_id}"):
                response = await client.get(path, headers=headers)
                assert response.status_code in (401, 403)
                text = response.text + json.dumps(dict(response.headers))
                assert not [secret for secret in secrets if secret in text]
                body = response.json()
                body.pop("timestamp", None)
                body.pop("request_id", None)
                bodies.append(body)
        assert bodies[0] == bodies[2] and bodies[1] == bodies[3]
    assert backend.calls == []


@pytest.mark.parametrize("path", ["/metrics", "/health", "/openapi.json", "/"])
async def test_operational_endpoints_are_open_on_loopback(gated_app, signing_key, path) -> None:
    """The load generator, readiness checks and a local scraper need no token."""
    _, _, client = await gated_app(jwt_gate(signing_key))
    assert (await client.get(path)).status_code == 200


@pytest.mark.parametrize("path", ["/metrics", "/health", "/openapi.json", "/"])
async def test_operational_endpoints_need_an_ops_grant_elsewhere(
    gated_app, signing_key, path
) -> None:
    """From another address: 401 without a token, 403 with a patient-only one, 200 with
    carebench.ops or system/*.read."""
    _, _, client = await gated_app(jwt_gate(signing_key), client=REMOTE)
    assert (await client.get(path)).status_code == 401
    reader = bearer(signing_key.token("user/*.read"))
    forbidden = await client.get(path, headers=reader)
    assert forbidden.status_code == 403
    assert "carebench.ops" in forbidden.headers["www-authenticate"]
    for scope in ("carebench.ops", "system/*.read"):
        allowed = await client.get(path, headers=bearer(signing_key.token(scope)))
        assert allowed.status_code == 200


async def test_fhir_metadata_is_public(gated_app, signing_key) -> None:
    """SMART: the CapabilityStatement is readable without a token, from anywhere."""
    _, _, client = await gated_app(jwt_gate(signing_key), client=REMOTE)
    response = await client.get("/fhir/metadata")
    assert response.status_code == 200
    assert response.json()["resourceType"] == "CapabilityStatement"


async def test_the_document_describes_the_security(gated_app, signing_key) -> None:
    """/openapi.json names the bearer scheme on patient operations, optional on the others."""
    _, _, client = await gated_app(jwt_gate(signing_key))
    document = (await client.get("/openapi.json")).json()
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    read = document["paths"]["/fhir/Patient/{id}"]["get"]
    assert read["security"] == [{"bearer": []}]
    assert {"401", "403"} <= read["responses"].keys()
    assert document["paths"]["/metrics"]["get"]["security"] == [{}, {"bearer": []}]
    assert "security" not in document["paths"]["/fhir/metadata"]["get"]


async def test_api_keys_by_header_or_bearer(gated_app, tmp_path: Path) -> None:
    """--auth apikey: X-API-Key or Authorization: Bearer; an unknown key is 401."""
    keys = tmp_path / "keys"
    keys.write_text("kiosk-key-0123456789abcdef user/Patient.read\n")
    gate = AccessGate(load_api_keys(str(keys)), api_key_header=True)
    _, backend, client = await gated_app(gate)
    ok = await client.get(LEGACY, headers={"X-API-Key": "kiosk-key-0123456789abcdef"})
    assert ok.status_code == 200
    assert (await client.get(FHIR_READ, headers=bearer("kiosk-key-0123456789abcdef"))).is_success
    unknown = await client.get(LEGACY, headers={"X-API-Key": "kiosk-key-0123456789abcdeF"})
    assert unknown.status_code == 401
    assert 'error_description="unknown API key"' in unknown.headers["www-authenticate"]
    narrow = await client.get(EVERYTHING, headers={"X-API-Key": "kiosk-key-0123456789abcdef"})
    assert narrow.status_code == 403
    document = (await client.get("/openapi.json")).json()
    assert document["paths"]["/api/v1/patients"]["get"]["security"] == [
        {"bearer": []},
        {"apiKey": []},
    ]
    assert backend.calls == [PATIENT, PATIENT]


async def test_x_api_key_is_ignored_in_jwt_mode(gated_app, signing_key) -> None:
    """Only the mode's own credential counts."""
    _, _, client = await gated_app(jwt_gate(signing_key))
    response = await client.get(LEGACY, headers={"X-API-Key": signing_key.token()})
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("::ffff:127.0.0.1", True),
     ("10.0.0.1", False), ("::ffff:10.0.0.1", False), ("testclient", False), ("", False)],
)  # fmt: skip
def test_loopback_clients(host: str, loopback: bool) -> None:
    """Only loopback addresses pass the operational rule without a credential."""
    assert is_loopback(host) is loopback
