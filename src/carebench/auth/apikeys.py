"""API keys from a file: one per line, `KEY [SCOPE ...]`; blank lines and `#` comments
skipped. Only their SHA-256 digests are kept, and a presented key's digest is compared with
every stored one by hmac.compare_digest (no early exit), so timing says nothing about how
close a guess was. A key listed without scopes gets `system/*.read`."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from carebench.auth.credentials import InvalidCredential, Principal
from carebench.auth.scopes import Grant
from carebench.errors import ConfigError

DEFAULT_SCOPES = ("system/*.read",)
#: Shorter keys are refused at start-up: guessable (e.g. `secrets.token_urlsafe(32)` is 43).
MIN_KEY_LENGTH = 16


class ApiKeyVerifier:
    """Checks keys against the stored digests."""

    def __init__(self, entries: list[tuple[bytes, tuple[str, ...]]]) -> None:
        """`entries`: (SHA-256 digest of the key, its scopes)."""
        self._entries = [
            (digest, Principal(f"apikey:{digest.hex()[:12]}", Grant(scopes)))
            for digest, scopes in entries
        ]

    def verify(self, credential: str) -> Principal:
        digest = hashlib.sha256(credential.encode("utf-8", "surrogateescape")).digest()
        found: Principal | None = None
        for stored, principal in self._entries:
            if hmac.compare_digest(stored, digest):
                found = principal
        if found is None:
            raise InvalidCredential("unknown API key")
        return found


def load_api_keys(path: str) -> ApiKeyVerifier:
    """The keys in `path`; ConfigError naming the line of a bad one."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--api-keys {path}: cannot read it ({exc})") from None
    entries: list[tuple[bytes, tuple[str, ...]]] = []
    for number, line in enumerate(lines, 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        key, scopes = words[0], tuple(words[1:]) or DEFAULT_SCOPES
        if len(key) < MIN_KEY_LENGTH:
            raise ConfigError(
                f"--api-keys {path} line {number}: a key needs at least {MIN_KEY_LENGTH} "
                "characters (make one: python -c 'import secrets; "
                "print(secrets.token_urlsafe(32))')"
            )
        entries.append((hashlib.sha256(key.encode()).digest(), scopes))
    if not entries:
        raise ConfigError(f"--api-keys {path}: no keys in it (one per line: KEY [SCOPE ...])")
    return ApiKeyVerifier(entries)
