"""API keys: read from a file, kept only as digests, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import pytest

from carebench.auth.apikeys import load_api_keys
from carebench.auth.credentials import InvalidCredential
from carebench.auth.scopes import ALLOW, DENY
from carebench.errors import ConfigError
from carebench.models import EVERYTHING, READ

READER = "k-reader-0123456789abcdef"
ADMIN = "k-admin-fedcba9876543210"


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys.txt"
    path.write_text(
        f"# carebench API keys\n\n{READER} user/Patient.read   # the ward's kiosk\n{ADMIN}\n"
    )
    return path


def test_the_right_key_gets_its_scopes(keys_file: Path) -> None:
    """A listed key verifies, with the scopes on its line (system/*.read when none)."""
    verifier = load_api_keys(str(keys_file))
    reader, admin = verifier.verify(READER), verifier.verify(ADMIN)
    assert reader.grant.decide(READ) == ALLOW
    assert reader.grant.decide(EVERYTHING) == DENY
    assert admin.grant.scopes == ("system/*.read",)
    assert admin.grant.decide(EVERYTHING) == ALLOW


def test_the_subject_is_a_digest_prefix_never_the_key(keys_file: Path) -> None:
    """Logs and audit may name the subject: it must not be the key itself."""
    subject = load_api_keys(str(keys_file)).verify(READER).subject
    assert subject == "apikey:" + hashlib.sha256(READER.encode()).hexdigest()[:12]
    assert READER not in subject


@pytest.mark.parametrize("wrong", ["k-reader-0123456789abcdeX", READER[:-1], "", READER + " "])
def test_an_unknown_key_is_refused(keys_file: Path, wrong: str) -> None:
    """Near misses are as unknown as anything else."""
    with pytest.raises(InvalidCredential, match="unknown API key"):
        load_api_keys(str(keys_file)).verify(wrong)


def test_only_digests_are_kept(keys_file: Path) -> None:
    """No plaintext key stays in the verifier's memory."""
    verifier = load_api_keys(str(keys_file))
    stored = repr([(digest, principal.subject) for digest, principal in verifier._entries])
    assert READER not in stored and ADMIN not in stored
    assert {digest for digest, _ in verifier._entries} == {
        hashlib.sha256(key.encode()).digest() for key in (READER, ADMIN)
    }


def test_every_stored_digest_is_compared_in_constant_time(
    keys_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """hmac.compare_digest against every key, without stopping at the first match."""
    compared: list[bytes] = []
    original = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append(a)
        return original(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    verifier = load_api_keys(str(keys_file))
    verifier.verify(READER)  # the first key: a loop with an early exit would stop here
    assert len(compared) == 2
    compared.clear()
    with pytest.raises(InvalidCredential):
        verifier.verify("k-nobody-00000000000000")
    assert len(compared) == 2


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("short scope/x\n", "at least 16 characters"),
        ("# nothing but comments\n\n", "no keys"),
    ],
)
def test_bad_key_files_are_refused_at_start(tmp_path: Path, content: str, message: str) -> None:
    """A guessable key or an empty file is a start-up error naming the problem."""
    path = tmp_path / "keys.txt"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_api_keys(str(path))


def test_a_missing_file(tmp_path: Path) -> None:
    """An unreadable --api-keys names the file."""
    with pytest.raises(ConfigError, match="cannot read"):
        load_api_keys(str(tmp_path / "absent"))
