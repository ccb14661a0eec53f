"""Access control over a real socket: keys and a token from the `carebench token` command, a
`carebench serve --auth jwt` process, and requests (and a load test) carrying the token."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from email.message import Message
from pathlib import Path

import pytest

from carebench.server.process import ServerProcess

pytestmark = pytest.mark.slow


def carebench(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "carebench", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.strip()


def get(url: str, token: str | None = None) -> tuple[int, Message, bytes]:
    """(status, headers (case-insensitive), body) of a GET, refusals included."""
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.headers, refused.read()


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("keys")
    carebench("token", "--new-key", str(folder))
    return folder


def test_a_minted_token_reads_through_a_real_server(keys: Path) -> None:
    """200 with the token, 401 without, 403 beyond its scopes; the refusals never queried."""
    reader = carebench("token", "--key", str(keys / "private.pem"), "--scope", "user/Patient.read")
    args = ["--auth", "jwt", "--jwt-key", str(keys / "public.pem"), "--min-latency", "0"]
    with ServerProcess([*args, "--max-latency", "1", "--error-rate", "0"]) as server:
        status, _, body = get(f"{server.url}/fhir/Patient/P00001", reader)
        assert status == 200 and json.loads(body)["id"] == "P00001"
        status, headers, body = get(f"{server.url}/api/v1/patients?id=P00001")
        assert status == 401
        assert headers["WWW-Authenticate"] == 'Bearer realm="carebench"'
        assert b"P00001" not in body
        status, headers, _ = get(f"{server.url}/fhir/Patient/P00001/$everything", reader)
        assert status == 403
        assert 'error="insufficient_scope"' in headers["WWW-Authenticate"]
        metrics = json.loads(get(f"{server.url}/metrics")[2])  # loopback: no token needed
    assert metrics["backend"]["total_queries"] == 1


def test_a_load_test_sends_the_token(keys: Path, tmp_path: Path) -> None:
    """loadtest --token-file: every request authorised; without it every one is 401."""
    token = carebench("token", "--key", str(keys / "private.pem"))
    (tmp_path / "token").write_text(token + "\n")
    common = ["loadtest", "--pattern", "workerpool", "--requests", "60", "--concurrency", "4"]
    common += ["--auth", "jwt", "--jwt-key", str(keys / "public.pem"), "--json"]
    common += ["--min-latency", "0", "--max-latency", "1", "--error-rate", "0"]
    with_token = json.loads(carebench(*common, "--token-file", str(tmp_path / "token")))[0]
    assert with_token["server_metrics"]["status_codes"] == {"200": 60}
    without = json.loads(carebench(*common))[0]
    assert without["server_metrics"]["status_codes"] == {"401": 60}
    assert without["server_metrics"]["backend"]["total_queries"] == 0
