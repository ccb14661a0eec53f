"""JWT verification: every way a token is refused, the keys it is checked with, the cache."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from carebench.auth.bearer import CACHE_SECONDS, LEEWAY, JwtVerifier, load_keys
from carebench.auth.credentials import InvalidCredential
from carebench.errors import ConfigError
from tests.auth.conftest import AUDIENCE, ISSUER, SigningKey, make_key


def verifier(key: SigningKey, source: str = "pem", clock=time.time) -> JwtVerifier:
    path = key.pem if source == "pem" else key.jwks
    return JwtVerifier(load_keys(str(path)), ISSUER, AUDIENCE, clock)


@pytest.mark.parametrize("source", ["pem", "jwks"])
def test_a_valid_token_gives_its_subject_scopes_and_patient(signing_key, source) -> None:
    """The principal carries sub, the parsed scopes and the patient claim."""
    token = signing_key.token("patient/Patient.read launch", patient="P00042")
    principal = verifier(signing_key, source).verify(token)
    assert principal.subject == "clinician-7"
    assert principal.patient == "P00042"
    assert principal.grant.scopes == ("patient/Patient.read", "launch")


def test_rsa_keys_verify_too(tmp_path: Path) -> None:
    """RS256 with an RSA public key."""
    key = make_key(tmp_path, "rsa")
    assert verifier(key).verify(key.token()).subject == "clinician-7"


def _refusal(key: SigningKey, token: str, source: str = "pem") -> str:
    with pytest.raises(InvalidCredential) as refused:
        verifier(key, source).verify(token)
    return str(refused.value)


def test_expired_beyond_the_leeway(signing_key) -> None:
    """exp more than the leeway ago: refused as expired."""
    now = int(time.time())
    token = signing_key.token(exp=now - int(LEEWAY) - 5, iat=now - 600, nbf=now - 600)
    assert _refusal(signing_key, token) == "the token has expired"


def test_expired_within_the_leeway_passes(signing_key) -> None:
    """A few seconds of clock skew are tolerated."""
    now = int(time.time())
    token = signing_key.token(exp=now - 5, iat=now - 600, nbf=now - 600)
    assert verifier(signing_key).verify(token).subject == "clinician-7"


def test_not_yet_valid(signing_key) -> None:
    """nbf beyond the leeway in the future: refused."""
    later = int(time.time()) + int(LEEWAY) + 60
    token = signing_key.token(nbf=later, iat=later, exp=later + 300)
    assert _refusal(signing_key, token) == "the token is not valid yet"


def test_wrong_audience(signing_key) -> None:
    """A token for another service is refused."""
    assert _refusal(signing_key, signing_key.token(aud="https://other.test")) == "wrong audience"


def test_wrong_issuer(signing_key) -> None:
    """A token from another issuer is refused, even signed by the right key."""
    assert _refusal(signing_key, signing_key.token(iss="https://evil.test")) == "wrong issuer"


@pytest.mark.parametrize("claim", ["exp", "iss", "aud", "sub"])
def test_a_missing_required_claim(signing_key, claim) -> None:
    """A token without exp, iss, aud or sub is refused (never valid forever)."""
    assert _refusal(signing_key, signing_key.token(**{claim: None})) in (
        "a required claim is missing",
        "wrong audience",
        "wrong issuer",
    )


def test_bad_signature(signing_key, other_key) -> None:
    """Signed by another key (the kid is the server's): refused."""
    forged = other_key.token(kid=signing_key.kid)
    assert _refusal(signing_key, forged) == "bad signature"


def test_tampered_claims(signing_key) -> None:
    """Scopes widened after signing: the signature no longer matches."""
    header, payload, signature = signing_key.token().split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["scope"] = "system/*.read"
    widened = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    assert _refusal(signing_key, f"{header}.{widened}.{signature}") == "bad signature"


def test_unknown_key_id(signing_key, other_key) -> None:
    """With a JWKS, a kid it does not list is refused before any signature check."""
    assert _refusal(signing_key, other_key.token(), "jwks") == "unknown key id"


@pytest.mark.parametrize("token", ["not-a-jwt", "a.b.c", "", "eyJhbGciOiJFUzI1NiJ9..."])
def test_malformed(signing_key, token) -> None:
    """Garbage is refused as malformed, without an exception escaping."""
    assert _refusal(signing_key, token) == "malformed token"


def test_alg_none_is_refused(signing_key) -> None:
    """An unsigned token (alg none) never passes."""
    unsigned = jwt.encode(
        {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": int(time.time()) + 60},
        "",
        algorithm="none",
    )
    assert _refusal(signing_key, unsigned) == "algorithm not allowed for this key"


def test_hmac_with_the_public_key_as_secret_is_refused(signing_key) -> None:
    """Algorithm confusion: HS256 keyed with the public PEM is not accepted."""
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": now + 60}
    segments = [
        base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()
        for part in ({"alg": "HS256", "typ": "JWT"}, claims)
    ]
    signing_input = ".".join(segments).encode()
    mac = hmac.new(signing_key.pem.read_bytes(), signing_input, hashlib.sha256).digest()
    forged = ".".join([*segments, base64.urlsafe_b64encode(mac).rstrip(b"=").decode()])
    assert _refusal(signing_key, forged) == "algorithm not allowed for this key"


def test_a_verified_token_is_cached_by_its_text(signing_key) -> None:
    """The second request with the same token costs no signature check; another does."""
    checker = verifier(signing_key)
    token = signing_key.token()
    first = checker.verify(token)
    assert checker.verify(token) is first
    assert checker.verifications == 1
    checker.verify(signing_key.token(sub="another"))
    assert checker.verifications == 2


def test_the_cache_holds_at_most_a_minute(signing_key) -> None:
    """Past CACHE_SECONDS the token is checked again."""
    now = [time.time()]
    checker = verifier(signing_key, clock=lambda: now[0])
    token = signing_key.token(exp=int(now[0]) + 3600)
    checker.verify(token)
    now[0] += CACHE_SECONDS - 1
    checker.verify(token)
    assert checker.verifications == 1
    now[0] += 2
    checker.verify(token)
    assert checker.verifications == 2


def test_the_cache_never_outlives_the_token(signing_key) -> None:
    """A token expiring in 10 s is trusted from the cache for 10 s, not 60."""
    now = [time.time()]
    checker = verifier(signing_key, clock=lambda: now[0])
    token = signing_key.token(exp=int(now[0]) + 10)
    checker.verify(token)
    now[0] += 11
    checker.verify(token)  # still valid by the real clock (leeway): checked again
    assert checker.verifications == 2


def test_a_refused_token_is_not_cached(signing_key, other_key) -> None:
    """Refusals are checked every time (and never turn into a cached pass)."""
    checker = verifier(signing_key)
    forged = other_key.token(kid=signing_key.kid)
    for _ in range(2):
        with pytest.raises(InvalidCredential):
            checker.verify(forged)
    assert checker.verifications == 2


def test_a_private_key_is_refused_as_jwt_key(tmp_path: Path, signing_key) -> None:
    """--jwt-key wants the public half; handing it the secret one is an error that says so."""
    path = tmp_path / "private.pem"
    path.write_bytes(
        signing_key.private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(ConfigError, match="private key"):
        load_keys(str(path))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"hello", "not a PEM public key or a JWKS"),
        (b'{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}', "not a usable JWKS"),
        (b'{"keys": []}', "no signing keys"),
        (b"{not json", "not a usable JWKS"),
    ],
)
def test_unusable_key_files(tmp_path: Path, content: bytes, message: str) -> None:
    """Garbage, symmetric keys and empty sets are refused at start-up."""
    path = tmp_path / "key"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=message):
        load_keys(str(path))


def test_a_missing_key_file(tmp_path: Path) -> None:
    """An unreadable --jwt-key names the file."""
    with pytest.raises(ConfigError, match="cannot read"):
        load_keys(str(tmp_path / "absent.pem"))
