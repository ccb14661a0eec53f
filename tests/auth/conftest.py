"""Keys made on the fly (never committed), tokens signed with them, and an app behind a gate."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import msgspec
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from carebench.auth.bearer import JwtVerifier, load_keys
from carebench.auth.gate import AccessGate
from carebench.auth.tokens import public_jwk
from carebench.patterns.base import PatternConfig, create_pattern
from carebench.server.app import CareBenchApp
from tests.contract import ConformanceHook
from tests.fakes import GatedBackend

ISSUER = "https://issuer.test"
AUDIENCE = "https://carebench.test/fhir"


@dataclass
class SigningKey:
    """A private key, the files a server reads its public half from, and a token minter."""

    private: Any
    algorithm: str
    pem: Path
    jwks: Path
    kid: str

    def token(self, scope: str = "user/Patient.read", **claims: Any) -> str:
        """A token valid now unless `claims` override iss, aud, exp, nbf, sub ..."""
        now = int(time.time())
        body: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "clinician-7",
            "scope": scope,
            "iat": now,
            "nbf": now,
            "exp": now + 300,
        }
        kid = claims.pop("kid", self.kid)
        headers = {"kid": kid} if kid else {}
        body.update(claims)
        body = {name: value for name, value in body.items() if value is not None}
        return jwt.encode(body, self.private, algorithm=self.algorithm, headers=headers)


def make_key(folder: Path, kind: str = "ec") -> SigningKey:
    private: Any
    if kind == "ec":
        private, algorithm = ec.generate_private_key(ec.SECP256R1()), "ES256"
    else:
        private, algorithm = rsa.generate_private_key(65537, 2048), "RS256"
    folder.mkdir(parents=True, exist_ok=True)
    pem = folder / "public.pem"
    pem.write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    jwk = public_jwk(private.public_key())
    jwks = folder / "jwks.json"
    jwks.write_text(json.dumps({"keys": [jwk]}))
    return SigningKey(private, algorithm, pem, jwks, jwk["kid"])


@pytest.fixture(scope="session")
def signing_key(tmp_path_factory: pytest.TempPathFactory) -> SigningKey:
    return make_key(tmp_path_factory.mktemp("ec-key"))


@pytest.fixture(scope="session")
def other_key(tmp_path_factory: pytest.TempPathFactory) -> SigningKey:
    """Another key: what it signs, the server must refuse."""
    return make_key(tmp_path_factory.mktemp("other-key"))


def jwt_gate(key: SigningKey, source: str = "pem") -> AccessGate:
    keys = load_keys(str(key.pem if source == "pem" else key.jwks))
    return AccessGate(JwtVerifier(keys, ISSUER, AUDIENCE))


GateApp = Callable[..., Coroutine[Any, Any, tuple[CareBenchApp, GatedBackend, httpx.AsyncClient]]]


@pytest.fixture
async def gated_app() -> AsyncIterator[GateApp]:
    """(app, backend, client) for a gate; `client` is the client's address. Every response is
    checked against the document the app serves (401 and 403 included)."""
    built: list[tuple[CareBenchApp, httpx.AsyncClient]] = []

    async def factory(
        gate: AccessGate, client: tuple[str, int] = ("127.0.0.1", 50000)
    ) -> tuple[CareBenchApp, GatedBackend, httpx.AsyncClient]:
        backend = GatedBackend(open_gate=True)
        pattern = create_pattern("workerpool", backend, PatternConfig(2, 4))
        app = CareBenchApp(pattern, backend, drain_timeout=1.0, gate=gate)
        await app.startup()
        document = msgspec.json.decode(app._openapi_body)
        http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=client),
            base_url="http://testserver",
            event_hooks={"response": [ConformanceHook(document)]},
        )
        built.append((app, http))
        return app, backend, http

    yield factory
    for app, http in built:
        await http.aclose()
        await app.shutdown()
