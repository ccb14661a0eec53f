"""HTTPS end to end on both servers: `carebench serve --tls-cert/--tls-key` on a real socket,
driven by `carebench loadtest`; verification, mutual TLS and the TLS 1.2 floor."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import sys
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from carebench.backends.simulator import SimulatorConfig
from carebench.loadgen.client import parse_url
from carebench.loadgen.config import LoadConfig
from carebench.loadgen.runner import RunPlan, TargetUnreachable, check_target, run_plan
from carebench.loadgen.tls import INSECURE_WARNING, ClientTLSConfig, client_context
from carebench.server.config import ServerConfig
from carebench.server.process import ServerProcess
from carebench.server.setup import ServerSetup
from tests.tls.pki import Pki

pytestmark = pytest.mark.slow
SERVERS = ["uvicorn", "granian"]
ZERO_DB = ["--db-profile", "ideal", "--min-latency", "0", "--max-latency", "0"]
SERVE = [*ZERO_DB, "--error-rate", "0", "--quiet"]
REQUESTS = 200


def server_tls(pki: Pki) -> list[str]:
    return ["--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key)]


def client_files(pki: Pki) -> list[str]:
    return ["--client-cert", str(pki.client_cert), "--client-key", str(pki.client_key)]


def trusting(pki: Pki, **client: Any) -> ssl.SSLContext:
    return client_context(ClientTLSConfig(cacert=str(pki.ca), **client))


@pytest.fixture(scope="module", params=SERVERS)
def https_server(request: pytest.FixtureRequest, pki: Pki) -> Iterator[ServerProcess]:
    """An HTTPS server (uvicorn, then granian) shared by the module's tests."""
    args = [*SERVE, "--server", request.param, *server_tls(pki)]
    with ServerProcess(args, tls=trusting(pki)) as server:
        yield server


@pytest.fixture(scope="module", params=SERVERS)
def mutual_server(request: pytest.FixtureRequest, pki: Pki) -> Iterator[ServerProcess]:
    """An HTTPS server that requires a client certificate issued by the client CA."""
    args = [*SERVE, "--server", request.param, *server_tls(pki)]
    args += ["--tls-client-ca", str(pki.client_ca)]
    client = {"client_cert": str(pki.client_cert), "client_key": str(pki.client_key)}
    with ServerProcess(args, tls=trusting(pki, **client)) as server:
        yield server


def loadtest(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "carebench", "loadtest", "--target", url]
    command += ["--requests", str(REQUESTS), "--concurrency", "4", "--json", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def only_result(run: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert run.returncode == 0, run.stderr
    (result,) = json.loads(run.stdout)
    loaded: dict[str, Any] = result
    return loaded


def test_loadtest_over_https_trusts_the_server_by_cacert(
    https_server: ServerProcess, pki: Pki
) -> None:
    """The server announces https; `loadtest --target https://... --cacert CA` gets every
    request answered 200 over verified TLS."""
    assert https_server.url.startswith("https://127.0.0.1:")

    result = only_result(loadtest(https_server.url, "--cacert", str(pki.ca)))

    assert result["target"] == https_server.url
    assert result["outcomes"]["success"] == REQUESTS
    assert result["server_metrics"]["total_requests"] >= REQUESTS


def test_generator_processes_speak_verified_tls_too(https_server: ServerProcess, pki: Pki) -> None:
    """--generators 2 over https: each process builds its own context from --cacert (an
    SSLContext does not cross processes) and every request is answered over verified TLS."""
    result = only_result(loadtest(https_server.url, "--cacert", str(pki.ca), "--generators", "2"))

    assert result["outcomes"]["success"] == REQUESTS
    assert [run["requests"] for run in result["generators"]] == [REQUESTS // 2] * 2


def test_an_untrusted_certificate_stops_the_load_test_with_one_error(
    https_server: ServerProcess, pki: Pki
) -> None:
    """Without --cacert (the system's CAs) the certificate does not verify: exit 1, one
    `error:` line with the cause and the fix, no traceback; a CA that did not issue it fails
    the same check."""
    run = loadtest(https_server.url)

    assert run.returncode == 1, run.stdout
    assert run.stderr.startswith(f"error: cannot reach {https_server.url}")
    assert "certificate verify failed" in run.stderr and "--cacert FILE" in run.stderr
    assert "Traceback" not in run.stderr
    unrelated = client_context(ClientTLSConfig(cacert=str(pki.unrelated_ca)))
    with pytest.raises(TargetUnreachable, match="certificate verify failed"):
        check_target(https_server.url, unrelated)


def test_insecure_skips_verification_and_says_so(https_server: ServerProcess) -> None:
    """--insecure talks to a server it cannot verify, and warns on stderr that it does."""
    run = loadtest(https_server.url, "--insecure")

    assert only_result(run)["outcomes"]["success"] == REQUESTS
    assert INSECURE_WARNING in run.stderr


def handshake(url: str, context: ssl.SSLContext) -> str | None:
    """The TLS version a handshake with the server settled on."""
    host, port, _, _ = parse_url(url)
    with (
        socket.create_connection((host, port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        return tls.version()


def legacy_client(maximum: ssl.TLSVersion) -> ssl.SSLContext:
    """A client that offers TLS 1.1 up to `maximum` (and does not verify: not the point)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_ciphers("DEFAULT:@SECLEVEL=0")  # OpenSSL 3 will not offer TLS 1.1 otherwise
    with warnings.catch_warnings():  # deprecated, which is the point
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1_1
        context.maximum_version = maximum
    return context


def test_tls_below_1_2_is_refused(https_server: ServerProcess, pki: Pki) -> None:
    """A client offering TLS 1.1 at most fails the handshake; the same client allowed up to
    1.2 is served 1.2, and an unrestricted one 1.3."""
    with pytest.raises(ssl.SSLError):
        handshake(https_server.url, legacy_client(ssl.TLSVersion.TLSv1_1))

    assert handshake(https_server.url, legacy_client(ssl.TLSVersion.TLSv1_2)) == "TLSv1.2"
    assert handshake(https_server.url, trusting(pki)) == "TLSv1.3"


def health_over(url: str, context: ssl.SSLContext) -> bytes:
    """The first bytes of the answer to GET /health: b"" when the handshake failed or the
    server closed without answering."""
    host, port, _, _ = parse_url(url)
    try:
        with (
            socket.create_connection((host, port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            tls.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return tls.recv(64)
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        return b""


def test_mutual_tls_refuses_a_client_without_a_certificate(
    mutual_server: ServerProcess, pki: Pki
) -> None:
    """With --tls-client-ca, a client without a certificate (or with one from another CA)
    gets no answer; one with a certificate from the client CA gets its 200."""
    stranger = trusting(pki, client_cert=str(pki.server_cert), client_key=str(pki.server_key))
    client = trusting(pki, client_cert=str(pki.client_cert), client_key=str(pki.client_key))

    assert health_over(mutual_server.url, trusting(pki)) == b""
    assert health_over(mutual_server.url, stranger) == b""
    assert health_over(mutual_server.url, client).startswith(b"HTTP/1.1 200")


def test_loadtest_presents_its_client_certificate(mutual_server: ServerProcess, pki: Pki) -> None:
    """`loadtest --client-cert/--client-key` passes mutual TLS; without them it stops with
    one error line."""
    refused = loadtest(mutual_server.url, "--cacert", str(pki.ca))
    assert refused.returncode == 1, refused.stdout
    assert refused.stderr.startswith(f"error: cannot reach {mutual_server.url}")
    assert "Traceback" not in refused.stderr

    result = only_result(loadtest(mutual_server.url, "--cacert", str(pki.ca), *client_files(pki)))
    assert result["outcomes"]["success"] == REQUESTS


@pytest.mark.parametrize("http_server", SERVERS)
def test_loadtest_starts_https_servers_and_trusts_their_certificate(
    http_server: str, pki: Pki
) -> None:
    """A load test that starts servers with --tls-cert/--tls-key (and --tls-client-ca) talks
    https to them, trusting the certificate it gave them: every request succeeds, and the
    sampler and the final /metrics read go over TLS too."""
    server = ServerConfig(
        server=http_server,
        tls_cert=str(pki.server_cert),
        tls_key=str(pki.server_key),
        tls_client_ca=str(pki.client_ca),
    )
    plan = RunPlan(
        patterns=["workerpool"],
        load=LoadConfig(duration=0.6, concurrency=4),
        setup=ServerSetup(server, database=SimulatorConfig(0.0, 0.0, 0.0, profile="ideal")),
        tls=ClientTLSConfig(client_cert=str(pki.client_cert), client_key=str(pki.client_key)),
    )

    (result,) = run_plan(plan)

    assert result["target"] is not None and result["target"].startswith("https://127.0.0.1:")
    assert result["success_requests"] > 0
    assert result["success_requests"] == result["total_requests"]
    assert result["server_samples"], "the sampler read no /metrics over TLS"
    assert result["server_metrics"] is not None
