"""The check every request passes when access control is on, before any backend work.

Patient lookups need a valid credential whose scopes cover the lookup (carebench.auth.scopes);
the operational endpoints (/metrics, /health, /openapi.json, /debug/*, /) are open to loopback
clients and otherwise need `system/*.read` or `carebench.ops`; the probes in OPEN_PATHS and
/fhir/metadata are open to all. A refusal says what is wrong
with the credential, never anything about the record asked for.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import lru_cache
from typing import NamedTuple

from carebench.auth.credentials import InvalidCredential, Principal, Verifier
from carebench.auth.scopes import ALLOW, DENY, OPS_SCOPE, needed_scopes
from carebench.models import Query

REALM = "carebench"
#: Open to everyone whatever the mode: the orchestrator's probes (they come from the node, not
#: loopback, and say only whether to send traffic). /fhir/metadata is open too (SMART: the
#: CapabilityStatement is public); the FHIR handler serves it without a lookup.
OPEN_PATHS = frozenset({"/health/live", "/health/ready"})
Headers = Iterable[tuple[bytes, bytes]]


class Denial(NamedTuple):
    """A refused request: its status, the error message and the WWW-Authenticate header."""

    status: int
    message: str
    headers: list[tuple[bytes, bytes]]


def _challenge(status: int, message: str, attributes: str = "") -> Denial:
    value = f'Bearer realm="{REALM}"' + (f", {attributes}" if attributes else "")
    return Denial(status, message, [(b"www-authenticate", value.encode("ascii"))])


NO_CREDENTIAL = _challenge(401, "authentication required: send Authorization: Bearer <token>")


@lru_cache(maxsize=64)
def invalid(reason: str) -> Denial:
    """401 for a credential that was refused for `reason` (fixed words, never the token)."""
    attributes = f'error="invalid_token", error_description="{reason}"'
    return _challenge(401, f"invalid credential: {reason}", attributes)


@lru_cache(maxsize=16)
def insufficient(scopes: str) -> Denial:
    attributes = f'error="insufficient_scope", scope="{scopes}"'
    return _challenge(403, f"insufficient scope: this request needs {scopes}", attributes)


OTHER_PATIENT = _challenge(
    403,
    "insufficient scope: patient/ scopes cover only the patient named in the token's patient claim",
    'error="insufficient_scope"',
)
OPS_DENIED = insufficient(f"system/*.read or {OPS_SCOPE}")


class AccessGate:
    """Authenticates with `verifier` and authorises by scope. `api_key_header` also reads a
    credential from `X-API-Key` (API key mode); `Authorization: Bearer` always works."""

    def __init__(self, verifier: Verifier, api_key_header: bool = False) -> None:
        self._verifier = verifier
        self._api_key_header = api_key_header

    @property
    def mode(self) -> str:
        """The --auth mode this gate serves: jwt or apikey."""
        return "apikey" if self._api_key_header else "jwt"

    def check(self, headers: Headers, query: Query) -> Denial | None:
        """None when the request may run `query`; otherwise how to refuse it. A verified
        principal is left on the query (for the audit record), refused or not."""
        principal = self.authenticate(headers)
        if not isinstance(principal, Principal):
            return principal
        query.principal = principal
        decision = principal.grant.decide(query.lookup)
        if decision == ALLOW:
            return None
        if decision == DENY:
            return insufficient(needed_scopes(query.lookup))
        ids = query.patient_ids or (query.patient_id,)
        if principal.patient is not None and all(i == principal.patient for i in ids):
            return None
        return OTHER_PATIENT

    def check_ops(self, client: tuple[str, int] | None, headers: Headers) -> Denial | None:
        """The operational endpoints: open on loopback, otherwise an ops grant."""
        if client is not None and is_loopback(client[0]):
            return None
        principal = self.authenticate(headers)
        if not isinstance(principal, Principal):
            return principal
        return None if principal.grant.ops else OPS_DENIED

    def authenticate(self, headers: Headers) -> Principal | Denial:
        credential = self._credential(headers)
        if credential is None:
            return NO_CREDENTIAL
        try:
            return self._verifier.verify(credential)
        except InvalidCredential as refused:
            return invalid(str(refused))

    def _credential(self, headers: Headers) -> str | None:
        """The bearer token, else (API key mode) the X-API-Key; None when neither is there."""
        api_key = None
        for name, value in headers:
            if name == b"authorization":
                scheme, _, credential = value.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer" and credential.strip():
                    return credential.strip()
            elif name == b"x-api-key" and self._api_key_header:
                api_key = value.decode("latin-1").strip() or None
        return api_key


@lru_cache(maxsize=1024)
def is_loopback(host: str) -> bool:
    """Whether a client address is loopback (127.0.0.0/8, ::1, IPv4-mapped 127.x)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool(address.is_loopback or (mapped is not None and mapped.is_loopback))
