"""`serve --auth none|jwt|apikey` and its keys (see docs/api.md, "Access control")."""

from __future__ import annotations

from dataclasses import dataclass

from carebench.auth.gate import AccessGate
from carebench.errors import ConfigError
from carebench.registry import check_choice
from carebench.settings import SWITCH, setting

AUTH_MODES = ("none", "jwt", "apikey")
#: What `carebench token` puts in iss and aud unless told otherwise, and what the server
#: expects unless told otherwise: a token for another issuer or audience is refused.
DEFAULT_ISSUER = "carebench"
DEFAULT_AUDIENCE = "carebench"


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """Who may read patient data, and whether the server may listen beyond loopback unlocked."""

    auth: str = setting(
        "none",
        "--auth",
        "access control: jwt (bearer tokens, SMART on FHIR scopes) or apikey (--api-keys)",
        choices=AUTH_MODES,
    )
    jwt_key: str | None = setting(
        None, "--jwt-key", "--auth jwt: PEM public key or JWKS file", metavar="FILE"
    )
    jwt_issuer: str = setting(DEFAULT_ISSUER, "--jwt-issuer", "--auth jwt: required iss claim")
    jwt_audience: str = setting(
        DEFAULT_AUDIENCE, "--jwt-audience", "--auth jwt: required aud claim"
    )
    api_keys: str | None = setting(
        None,
        "--api-keys",
        "--auth apikey: file of keys, one a line: KEY [SCOPE ...]",
        metavar="FILE",
    )
    insecure: bool = setting(
        False,
        "--insecure",
        "allow a non-loopback --host with --auth none or without --tls-cert (anyone who "
        "reaches it, or watches the network, reads records)",
        SWITCH,
        forwarded=False,
    )

    def __post_init__(self) -> None:
        check_choice("--auth", "access control", self.auth, AUTH_MODES)
        if self.auth == "jwt" and not self.jwt_key:
            raise ConfigError(
                "--auth jwt needs --jwt-key FILE (a PEM public key or a JWKS; make a pair "
                "with `carebench token --new-key DIR`)"
            )
        if self.auth == "apikey" and not self.api_keys:
            raise ConfigError("--auth apikey needs --api-keys FILE (one key a line)")
        if self.jwt_key and self.auth != "jwt":
            raise ConfigError(f"--jwt-key has no effect with --auth {self.auth}: add --auth jwt")
        if self.api_keys and self.auth != "apikey":
            raise ConfigError(
                f"--api-keys has no effect with --auth {self.auth}: add --auth apikey"
            )
        self.build_gate()  # an unreadable or unusable key file is an error here, at exit 2

    def build_gate(self) -> AccessGate | None:
        """The check requests pass (None with --auth none); reads the key files."""
        if self.auth == "jwt":
            from carebench.auth.bearer import JwtVerifier, load_keys

            keys = load_keys(self.jwt_key or "")
            return AccessGate(JwtVerifier(keys, self.jwt_issuer, self.jwt_audience))
        if self.auth == "apikey":
            from carebench.auth.apikeys import load_api_keys

            return AccessGate(load_api_keys(self.api_keys or ""), api_key_header=True)
        return None
