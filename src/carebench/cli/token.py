"""`carebench token`: a signing key pair, or a test JWT signed with one, in one line each."""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from typing import Any

from carebench.auth.config import DEFAULT_AUDIENCE, DEFAULT_ISSUER
from carebench.cli.options import add_settings, from_args
from carebench.errors import ConfigError
from carebench.settings import Kind, setting

_TTL = re.compile(r"\s*(\d+(?:\.\d*)?)\s*(s|m|h|d)?\s*")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def ttl_seconds(text: str) -> float:
    """A lifetime: `3600`, `90s`, `15m`, `1h` or `1d`; returned in seconds."""
    match = _TTL.fullmatch(text)
    if not match:
        raise argparse.ArgumentTypeError(f"invalid lifetime {text!r} (e.g. 1h, 15m, 90s)")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


TTL = Kind("lifetime", ttl_seconds, lambda value: f"{value:g}s", lambda value: f"{value:g} s")


@dataclass(frozen=True, slots=True)
class TokenRequest:
    """A key pair to write, or the claims of a token to sign."""

    new_key: str | None = setting(
        None,
        "--new-key",
        "write a fresh ES256 pair into DIR (private.pem, public.pem, jwks.json) and exit",
        metavar="DIR",
    )
    key: str | None = setting(
        None, "--key", "PEM private key to sign with (RSA: RS256, EC P-256: ES256)", metavar="FILE"
    )
    scope: str = setting(
        "user/Patient.read", "--scope", "space-separated SMART on FHIR scopes", metavar="SCOPES"
    )
    sub: str = setting("carebench-user", "--sub", "subject: who the token speaks for")
    patient: str | None = setting(
        None, "--patient", "patient claim: the one patient patient/ scopes cover", metavar="ID"
    )
    issuer: str = setting(DEFAULT_ISSUER, "--issuer", "iss claim (serve --jwt-issuer)")
    audience: str = setting(DEFAULT_AUDIENCE, "--audience", "aud claim (serve --jwt-audience)")
    ttl: float = setting(3600.0, "--ttl", "lifetime: 90s, 15m, 1h, 1d", TTL, metavar="DURATION")

    def __post_init__(self) -> None:
        if (self.new_key is None) == (self.key is None):
            raise ConfigError(
                "give --key FILE (sign a token) or --new-key DIR (make a key pair), not both"
            )
        if self.ttl <= 0:
            raise ConfigError(f"--ttl ({self.ttl:g}s) must be > 0")
        if not self.scope.split():
            raise ConfigError("--scope: give at least one scope, e.g. user/Patient.read")


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "token",
        help="mint a test JWT (or a key pair to sign them) for serve --auth jwt",
        description="Print a JWT signed with --key for `carebench serve --auth jwt`, or write a "
        "fresh key pair with --new-key DIR. For trying access control, not for production.",
    )
    add_settings(parser, TokenRequest, "token")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from carebench.auth import tokens

    request = from_args(TokenRequest, args)
    if request.new_key is not None:
        private, public, jwks = tokens.new_key_pair(request.new_key)
        print(f"wrote {private} (keep it secret), {public} and {jwks}", file=sys.stderr)
        print(
            f"next: carebench serve --auth jwt --jwt-key {public}\n"
            f"      carebench token --key {private} --scope 'user/Patient.read'",
            file=sys.stderr,
        )
        return 0
    token = tokens.mint(
        request.key or "",
        request.sub,
        request.scope,
        request.issuer,
        request.audience,
        request.ttl,
        request.patient,
    )
    print(token)
    return 0
