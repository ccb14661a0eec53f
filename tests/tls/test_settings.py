"""TLS settings: bad files and half-given pairs are one `error:` line, never a traceback."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from carebench.cli import build_parser
from carebench.cli.loadtest import build_plan
from carebench.errors import ConfigError
from carebench.loadgen.tls import ClientTLSConfig, client_context
from carebench.server.config import ServerConfig
from carebench.server.tls import server_context
from tests.tls.pki import Pki


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No CAREBENCH_* variable of the outer environment leaks into a test."""
    for name in list(os.environ):
        if name.startswith("CAREBENCH_"):
            monkeypatch.delenv(name)


def test_server_context_is_tls12_or_later_and_requires_client_certs_with_a_ca(pki: Pki) -> None:
    """The server context refuses TLS below 1.2; with --tls-client-ca it requires a client
    certificate (CERT_REQUIRED), without it asks for none."""
    plain = server_context(str(pki.server_cert), str(pki.server_key), None)
    mutual = server_context(str(pki.server_cert), str(pki.server_key), str(pki.client_ca))

    assert plain.minimum_version == ssl.TLSVersion.TLSv1_2
    assert plain.verify_mode == ssl.CERT_NONE
    assert mutual.verify_mode == ssl.CERT_REQUIRED
    tls12 = [cipher["name"] for cipher in plain.get_ciphers() if cipher["protocol"] == "TLSv1.2"]
    assert tls12 and all("GCM" in name or "CHACHA20" in name for name in tls12)


def server_error(**tls: str) -> str:
    with pytest.raises(ConfigError) as refused:
        ServerConfig(**tls)  # type: ignore[arg-type]
    return str(refused.value)


def test_half_a_key_pair_names_the_missing_flag(pki: Pki) -> None:
    """--tls-cert without --tls-key (and the reverse) says which one is missing."""
    assert "--tls-cert needs --tls-key" in server_error(tls_cert=str(pki.server_cert))
    assert "--tls-key needs --tls-cert" in server_error(tls_key=str(pki.server_key))


def test_a_client_ca_without_a_certificate_is_refused(pki: Pki) -> None:
    """--tls-client-ca alone would verify clients of a server that speaks no TLS."""
    assert "add --tls-cert and --tls-key" in server_error(tls_client_ca=str(pki.client_ca))


def test_missing_files_and_a_key_of_another_certificate_are_refused(
    pki: Pki, tmp_path: Path
) -> None:
    """A missing file is named; a key that is not the certificate's does not load."""
    missing = str(tmp_path / "nope.pem")
    cert, key = str(pki.server_cert), str(pki.server_key)

    assert f"--tls-cert: no such file {missing!r}" in server_error(tls_cert=missing, tls_key=key)
    assert "--tls-client-ca: no such file" in server_error(
        tls_cert=cert, tls_key=key, tls_client_ca=missing
    )
    mismatch = server_error(tls_cert=cert, tls_key=str(pki.other_key))
    assert "do not load" in mismatch and "is the key the certificate's" in mismatch
    not_a_ca = server_error(tls_cert=cert, tls_key=key, tls_client_ca=str(pki.server_key))
    assert "holds no PEM CA certificate" in not_a_ca


def test_serve_with_a_bad_key_exits_2_with_one_error_line(pki: Pki) -> None:
    """`carebench serve` with a mismatched key prints `error: ...` and exits 2 at start-up."""
    command = [
        sys.executable, "-m", "carebench", "serve", "--port", "0",
        "--tls-cert", str(pki.server_cert), "--tls-key", str(pki.other_key),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)

    assert result.returncode == 2
    assert result.stderr.startswith("error: --tls-cert")
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_client_settings_refuse_contradictions(pki: Pki, tmp_path: Path) -> None:
    """--cacert with --insecure, half a client key pair and a missing CA file are refused."""
    with pytest.raises(ConfigError, match="remove one of them"):
        ClientTLSConfig(cacert=str(pki.ca), insecure=True)
    with pytest.raises(ConfigError, match="--client-cert needs --client-key"):
        ClientTLSConfig(client_cert=str(pki.client_cert))
    with pytest.raises(ConfigError, match="--cacert: no such file"):
        ClientTLSConfig(cacert=str(tmp_path / "nope.pem"))


def test_client_context_verifies_unless_insecure(pki: Pki) -> None:
    """By default the client checks the certificate and the hostname; --insecure does not."""
    verifying = client_context(ClientTLSConfig(cacert=str(pki.ca)))
    insecure = client_context(ClientTLSConfig(insecure=True))

    assert verifying.verify_mode == ssl.CERT_REQUIRED and verifying.check_hostname
    assert insecure.verify_mode == ssl.CERT_NONE and not insecure.check_hostname
    assert verifying.minimum_version == ssl.TLSVersion.TLSv1_2


def plan_error(*args: str) -> str:
    parsed = build_parser().parse_args(["loadtest", *args])
    with pytest.raises(ConfigError) as refused:
        build_plan(parsed)
    return str(refused.value)


def test_loadtest_refuses_tls_client_settings_nothing_uses(pki: Pki) -> None:
    """--cacert against an http:// target, in-process or with plain servers has no effect, and
    servers started with --tls-client-ca need a client certificate."""
    ca = ["--cacert", str(pki.ca)]
    assert "the --target is http://" in plan_error("--target", "http://127.0.0.1:1", *ca)
    assert "--mode inprocess" in plan_error("--mode", "inprocess", *ca)
    assert "plain HTTP" in plan_error(*ca)
    server_tls = ["--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key)]
    assert "--client-cert FILE" in plan_error(*server_tls, "--tls-client-ca", str(pki.client_ca))


def test_loadtest_forwards_tls_settings_to_the_servers_it_starts(pki: Pki) -> None:
    """--tls-cert/--tls-key/--tls-client-ca reach `carebench serve` as flags."""
    server_tls = ["--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key)]
    client = ["--client-cert", str(pki.client_cert), "--client-key", str(pki.client_key)]
    parsed = build_parser().parse_args(
        ["loadtest", *server_tls, "--tls-client-ca", str(pki.client_ca), *client]
    )
    args = build_plan(parsed).server_args

    assert args[args.index("--tls-cert") + 1] == str(pki.server_cert)
    assert args[args.index("--tls-key") + 1] == str(pki.server_key)
    assert args[args.index("--tls-client-ca") + 1] == str(pki.client_ca)
