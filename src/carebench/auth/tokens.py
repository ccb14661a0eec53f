"""Test credentials: a fresh signing key pair, and JWTs signed with it (`carebench token`).

Tokens carry a `kid` (the RFC 7638 thumbprint of the public key), so a server given the PEM
public key or the JWKS written beside it accepts them alike.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from carebench.errors import ConfigError

PRIVATE_FILE = "private.pem"
PUBLIC_FILE = "public.pem"
JWKS_FILE = "jwks.json"
_EC_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
_THUMBPRINT_MEMBERS = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n")}


def new_key_pair(directory: str) -> tuple[Path, Path, Path]:
    """Write an ES256 (P-256) pair: private.pem (mode 0600), public.pem and jwks.json.
    Refuses to overwrite any of them."""
    folder = Path(directory)
    paths = (folder / PRIVATE_FILE, folder / PUBLIC_FILE, folder / JWKS_FILE)
    existing = [str(path) for path in paths if path.exists()]
    if existing:
        raise ConfigError(f"--new-key {directory}: {', '.join(existing)} already exist(s)")
    private = ec.generate_private_key(ec.SECP256R1())
    folder.mkdir(parents=True, exist_ok=True)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    descriptor = os.open(paths[0], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(pem)
    public = private.public_key()
    paths[1].write_bytes(
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    jwk = public_jwk(public)
    paths[2].write_text(json.dumps({"keys": [jwk]}, indent=2) + "\n")
    return paths


def public_jwk(public: Any) -> dict[str, Any]:
    """The JWK of a public key, with its thumbprint as kid, for signatures."""
    algorithm = jwt.get_algorithm_by_name(_algorithm_of(public))
    jwk: dict[str, Any] = algorithm.to_jwk(public, as_dict=True)
    members = _THUMBPRINT_MEMBERS[jwk["kty"]]
    canonical = json.dumps({name: jwk[name] for name in members}, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).digest()
    kid = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    return {**jwk, "kid": kid, "use": "sig", "alg": _algorithm_of(public)}


def mint(
    key_path: str,
    subject: str,
    scopes: str,
    issuer: str,
    audience: str,
    ttl: float,
    patient: str | None = None,
    now: float | None = None,
) -> str:
    """A JWT signed with the PEM private key at `key_path` (RSA: RS256, EC: ES256/384/512)."""
    try:
        private = serialization.load_pem_private_key(Path(key_path).read_bytes(), password=None)
    except OSError as exc:
        raise ConfigError(f"--key {key_path}: cannot read it ({exc.strerror})") from None
    except (ValueError, TypeError):
        raise ConfigError(
            f"--key {key_path}: not an unencrypted PEM private key (make one with "
            "`carebench token --new-key DIR`)"
        ) from None
    if not isinstance(private, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ConfigError(f"--key {key_path}: use an RSA or EC private key")
    public = private.public_key()
    algorithm = _algorithm_of(public)
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "sub": subject,
        "scope": scopes,
        "iat": issued,
        "nbf": issued,
        "exp": issued + max(1, round(ttl)),
        "jti": uuid.uuid4().hex,
    }
    if patient is not None:
        claims["patient"] = patient
    kid = public_jwk(public)["kid"]
    return jwt.encode(claims, private, algorithm=algorithm, headers={"kid": kid})


def _algorithm_of(public: Any) -> str:
    if isinstance(public, rsa.RSAPublicKey):
        return "RS256"
    if isinstance(public, ec.EllipticCurvePublicKey) and public.curve.name in _EC_ALGORITHMS:
        return _EC_ALGORITHMS[public.curve.name]
    raise ConfigError(f"unsupported key type {type(public).__name__}: use an RSA or EC key")
