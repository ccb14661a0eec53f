"""`carebench token`: a key pair and tokens the server's verifier accepts."""

from __future__ import annotations

import stat
from pathlib import Path

import jwt
import pytest

from carebench.auth.bearer import JwtVerifier, load_keys
from carebench.auth.config import DEFAULT_AUDIENCE, DEFAULT_ISSUER
from carebench.cli import main
from carebench.cli.token import ttl_seconds


def new_key(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "--new-key", str(folder)]) == 0
    capsys.readouterr()


def test_new_key_writes_a_private_pem_only_its_owner_reads(tmp_path, capsys) -> None:
    """private.pem 0600, public.pem and jwks.json, and the next commands on stderr."""
    assert main(["token", "--new-key", str(tmp_path / "keys")]) == 0
    err = capsys.readouterr().err
    assert "carebench serve --auth jwt --jwt-key" in err
    private = tmp_path / "keys" / "private.pem"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in private.read_bytes()
    assert b"PUBLIC KEY" in (tmp_path / "keys" / "public.pem").read_bytes()
    assert '"kid"' in (tmp_path / "keys" / "jwks.json").read_text()


def test_new_key_never_overwrites(tmp_path, capsys) -> None:
    """A second --new-key into the same folder is refused (exit 2), the key kept."""
    new_key(tmp_path, capsys)
    before = (tmp_path / "private.pem").read_bytes()
    assert main(["token", "--new-key", str(tmp_path)]) == 2
    assert "already exist" in capsys.readouterr().err
    assert (tmp_path / "private.pem").read_bytes() == before


@pytest.mark.parametrize("public", ["public.pem", "jwks.json"])
def test_a_minted_token_verifies_with_the_public_half(tmp_path, capsys, public) -> None:
    """Round trip: what `token` prints, the server's verifier accepts (PEM or JWKS)."""
    new_key(tmp_path, capsys)
    argv = ["token", "--key", str(tmp_path / "private.pem"), "--sub", "user1"]
    argv += ["--scope", "patient/Patient.read", "--patient", "P00001", "--ttl", "1h"]
    assert main(argv) == 0
    token = capsys.readouterr().out.strip()
    keys = load_keys(str(tmp_path / public))
    principal = JwtVerifier(keys, DEFAULT_ISSUER, DEFAULT_AUDIENCE).verify(token)
    assert (principal.subject, principal.patient) == ("user1", "P00001")
    assert principal.grant.scopes == ("patient/Patient.read",)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 3600
    assert jwt.get_unverified_header(token)["alg"] == "ES256"


def test_issuer_and_audience_follow_the_flags(tmp_path, capsys) -> None:
    """--issuer/--audience go into iss/aud; the default verifier then refuses the token."""
    new_key(tmp_path, capsys)
    argv = ["token", "--key", str(tmp_path / "private.pem"), "--issuer", "https://idp"]
    assert main([*argv, "--audience", "api://x"]) == 0
    claims = jwt.decode(capsys.readouterr().out.strip(), options={"verify_signature": False})
    assert (claims["iss"], claims["aud"]) == ("https://idp", "api://x")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["token"], "give --key FILE"),
        (["token", "--key", "a", "--new-key", "b"], "not both"),
        (["token", "--key", "/nonexistent/private.pem"], "cannot read"),
        (["token", "--key", "x", "--ttl", "0"], "--ttl (0s) must be > 0"),
        (["token", "--key", "x", "--ttl", "soon"], "invalid lifetime"),
    ],
)
def test_bad_requests_exit_2(argv, message, capsys) -> None:
    """Every mistake is `error: ...` and exit 2, never a traceback."""
    try:
        status = main(argv)
    except SystemExit as exit_:  # argparse's own refusals (a --ttl it cannot parse)
        status = int(exit_.code or 0)
    assert status == 2
    assert message in capsys.readouterr().err


def test_a_public_key_cannot_sign(tmp_path, capsys) -> None:
    """--key public.pem is refused with the way to make a private key."""
    new_key(tmp_path, capsys)
    assert main(["token", "--key", str(tmp_path / "public.pem")]) == 2
    assert "not an unencrypted PEM private key" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("90s", 90), ("15m", 900), ("1h", 3600), ("1d", 86400)]
)
def test_lifetimes(text: str, seconds: float) -> None:
    """--ttl takes s, m, h and d."""
    assert ttl_seconds(text) == seconds
