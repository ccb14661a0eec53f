"""Bearer JWTs, verified with PyJWT: signature by a configured public key (PEM, or a JWKS
chosen by `kid`), `exp`/`nbf` with a small leeway, `iss`, `aud`; scopes from `scope`.

Verified tokens are cached by their exact text until min(exp, 60 s from now): a load test that
repeats one token pays a dict lookup per request instead of a signature check.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from carebench.auth.credentials import InvalidCredential, Principal
from carebench.auth.scopes import Grant
from carebench.errors import ConfigError

#: Clock skew tolerated on exp and nbf, seconds.
LEEWAY = 30.0
#: Longest a verified token is trusted without checking it again, seconds.
CACHE_SECONDS = 60.0
#: Cached tokens at most; the cache is emptied when full (a flood of distinct valid tokens
#: costs a signature check each, as it would without a cache).
CACHE_SIZE = 10_000
_EC_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
_RSA_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
#: PyJWT's refusals in the words a 401 gives (subclasses before their bases).
_REASONS: tuple[tuple[type[Exception], str], ...] = (
    (jwt.ExpiredSignatureError, "the token has expired"),
    (jwt.ImmatureSignatureError, "the token is not valid yet"),
    (jwt.InvalidAudienceError, "wrong audience"),
    (jwt.InvalidIssuerError, "wrong issuer"),
    (jwt.InvalidSignatureError, "bad signature"),
    (jwt.MissingRequiredClaimError, "a required claim is missing"),
    (jwt.InvalidAlgorithmError, "algorithm not allowed for this key"),
)


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """A public key and the signature algorithms it may verify (never HS*, never none)."""

    key: Any
    algorithms: tuple[str, ...]


def algorithms_for(key: object, source: str) -> tuple[str, ...]:
    """The algorithms a public key may verify; ConfigError for any other kind of key."""
    if isinstance(key, rsa.RSAPublicKey):
        return _RSA_ALGORITHMS
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in _EC_ALGORITHMS:
        return (_EC_ALGORITHMS[key.curve.name],)
    if isinstance(key, ed25519.Ed25519PublicKey):
        return ("EdDSA",)
    raise ConfigError(
        f"--jwt-key {source}: not an RSA, EC (P-256/384/521) or Ed25519 public key "
        f"({type(key).__name__})"
    )


def load_keys(path: str) -> dict[str | None, VerificationKey]:
    """kid -> key from a PEM public key (kid None: any token) or a JWKS/JWK JSON file."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"--jwt-key {path}: cannot read it ({exc.strerror})") from None
    if data.lstrip().startswith(b"{"):
        return _load_jwks(path, data)
    if b"PRIVATE KEY" in data:
        raise ConfigError(
            f"--jwt-key {path}: this is a private key; the server needs only the public one "
            "(public.pem from `carebench token --new-key DIR`)"
        )
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        raise ConfigError(f"--jwt-key {path}: not a PEM public key or a JWKS file") from None
    return {None: VerificationKey(key, algorithms_for(key, path))}


def _load_jwks(path: str, data: bytes) -> dict[str | None, VerificationKey]:
    try:
        document = json.loads(data)
        entries = document.get("keys", [document])
        keys = {}
        for entry in entries:
            if entry.get("use", "sig") != "sig":
                continue
            jwk = jwt.PyJWK(entry)
            keys[jwk.key_id] = VerificationKey(jwk.key, algorithms_for(jwk.key, path))
    except (ValueError, KeyError, TypeError, AttributeError, jwt.PyJWTError) as exc:
        raise ConfigError(f"--jwt-key {path}: not a usable JWKS or JWK ({exc})") from None
    if not keys:
        raise ConfigError(f"--jwt-key {path}: the JWKS has no signing keys")
    return keys


class JwtVerifier:
    """Verifies bearer JWTs against `keys`, `issuer` and `audience`; caches the verified."""

    def __init__(
        self,
        keys: dict[str | None, VerificationKey],
        issuer: str,
        audience: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys = keys
        self._issuer = issuer
        self._audience = audience
        self._clock = clock
        self._cache: dict[str, tuple[Principal, float]] = {}
        #: Full verifications done (cache misses that reached a key), for tests and metrics.
        self.verifications = 0

    def verify(self, credential: str) -> Principal:
        now = self._clock()
        cached = self._cache.get(credential)
        if cached is not None and now < cached[1]:
            return cached[0]
        principal, expires = self._verify(credential)
        if len(self._cache) >= CACHE_SIZE:
            self._cache.clear()
        self._cache[credential] = (principal, min(expires, now + CACHE_SECONDS))
        return principal

    def _verify(self, token: str) -> tuple[Principal, float]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidCredential("malformed token") from None
        key = self._key_for(header.get("kid"))
        self.verifications += 1
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=list(key.algorithms),
                audience=self._audience,
                issuer=self._issuer,
                leeway=LEEWAY,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError as refused:
            raise InvalidCredential(_reason(refused)) from None
        subject, patient = claims["sub"], claims.get("patient")
        if not isinstance(subject, str) or not (patient is None or isinstance(patient, str)):
            raise InvalidCredential("sub and patient must be strings")
        client = claims.get("client_id", claims.get("azp"))
        client_id = client if isinstance(client, str) else None
        principal = Principal(subject, Grant(_scopes(claims)), patient, client_id)
        return principal, float(claims["exp"])

    def _key_for(self, kid: object) -> VerificationKey:
        if None in self._keys:  # a PEM key: the one key for every token
            return self._keys[None]
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        key = self._keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise InvalidCredential("unknown key id")
        return key


def _reason(refused: Exception) -> str:
    for kind, reason in _REASONS:
        if isinstance(refused, kind):
            return reason
    return "malformed token"


def _scopes(claims: dict[str, Any]) -> list[str]:
    """SMART's space-separated `scope`; a list (`scope` or `scp`) is taken as it is."""
    scopes = claims.get("scope", claims.get("scp", ""))
    if isinstance(scopes, str):
        return scopes.split()
    if isinstance(scopes, list):
        return [scope for scope in scopes if isinstance(scope, str)]
    return []
