"""docs/deploy.md's recipe for the Secrets, run as written (openssl, `carebench token
--new-key`, `kubectl create secret`, the last with --dry-run=client so that no cluster is
needed): it makes the Secrets and keys the manifests mount, and a server started with the
Deployment's settings on those files is verified under the Service's name and accepts a
token the Job's init container mints from them."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from carebench.cli import main
from carebench.loadgen.tls import ClientTLSConfig, client_context
from carebench.server.process import ServerProcess
from tests.deploy import kubelet, manifests
from tests.deploy.manifests import ROOT, SECRET_KEYS

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed"),
    pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed"),
]
#: Each `kubectl` of the recipe prints its object instead of sending it to a cluster.
_OFFLINE_KUBECTL = 'kubectl() { command kubectl "$@" --dry-run=client -o yaml; echo ---; }\n'


def recipe() -> str:
    """The first sh block under "## Create the Secrets" in docs/deploy.md."""
    text = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    section = text.split("## Create the Secrets", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert match is not None, "docs/deploy.md lost its Secrets recipe"
    return match.group(1)


@pytest.fixture(scope="module")
def documented_secrets(tmp_path_factory: pytest.TempPathFactory) -> kubelet.SecretData:
    """The Secrets the recipe makes, decoded: {name: {key: bytes}}."""
    directory = tmp_path_factory.mktemp("recipe")
    (directory / "kubeconfig").write_text("", encoding="utf-8")
    environment = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "KUBECONFIG": str(directory / "kubeconfig"),
    }
    run = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", _OFFLINE_KUBECTL + recipe()],
        cwd=directory,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    objects = [doc for doc in yaml.safe_load_all(run.stdout) if doc]
    return {
        obj["metadata"]["name"]: {
            key: base64.b64decode(value) for key, value in obj["data"].items()
        }
        for obj in objects
        if obj["kind"] == "Secret"
    }


def test_recipe_makes_every_key_the_manifests_mount(documented_secrets: kubelet.SecretData) -> None:
    """The recipe's Secrets have the names and keys the manifests (and these tests) expect."""
    keys = {name: tuple(sorted(data)) for name, data in documented_secrets.items()}
    assert keys == {name: tuple(sorted(names)) for name, names in SECRET_KEYS.items()}
    mounted = {
        (secret, key)
        for workload in (manifests.one("Deployment"), manifests.one("Job"))
        for item in manifests.containers(workload)
        for _, secret, key in manifests.mounted_files(workload, item)
    }
    assert all(key in documented_secrets.get(secret, {}) for secret, key in mounted)


def test_server_on_the_recipes_files_is_verified_as_the_service(
    tmp_path: Path, documented_secrets: kubelet.SecretData, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server with the Deployment's settings on the recipe's certificate verifies, against
    the recipe's CA, as the Service's names and not as another; a token minted as the Job
    mints it reads a patient."""
    deployment, job = manifests.one("Deployment"), manifests.one("Job")
    server = kubelet.view(tmp_path / "server", deployment, "carebench", documented_secrets)
    # On loopback, with a database that never fails, so the one patient read must succeed.
    environment = {**server.environment, "CAREBENCH_HOST": "127.0.0.1", "CAREBENCH_ERROR_RATE": "0"}
    environment.pop("CAREBENCH_PORT", None)
    trust = client_context(ClientTLSConfig(cacert=_ca_file(tmp_path, documented_secrets)))
    token = _mint(tmp_path / "job", job, documented_secrets, monkeypatch)
    service = manifests.one("Service")["metadata"]["name"]
    with ServerProcess(["--quiet"], env=environment) as process:
        port = int(process.url.rsplit(":", 1)[1])
        for name in (service, f"{service}.default.svc", f"{service}.default.svc.cluster.local"):
            status, _ = _get(port, name, trust, "/health/live")
            assert status == 200
        with pytest.raises(ssl.SSLCertVerificationError):
            _get(port, "elsewhere", trust, "/health/live")
        status, body = _get(port, service, trust, "/api/v1/patients?id=P12345", token)
    assert status == 200, body
    assert json.loads(body)["patient"]["id"] == "P12345"


def _ca_file(directory: Path, secrets: kubelet.SecretData) -> str:
    path = directory / "ca.crt"
    path.write_bytes(secrets["carebench-tls"]["ca.crt"])
    return str(path)


def _mint(
    root: Path,
    job: manifests.Manifest,
    secrets: kubelet.SecretData,
    monkeypatch: pytest.MonkeyPatch,
) -> str:
    view = kubelet.view(root, job, "token", secrets)
    command = manifests.container(job, "token")["command"][2]
    argv = command.split(">")[0].split()[1:]
    argv = [word.strip("'") for word in argv]
    printed = io.StringIO()
    with view.applied(monkeypatch), contextlib.redirect_stdout(printed):
        assert main(kubelet.arguments(view, argv)) == 0
    return printed.getvalue().strip()


def _get(
    port: int, name: str, trust: ssl.SSLContext, target: str, token: str | None = None
) -> tuple[int, str]:
    """GET over TLS to 127.0.0.1, verifying the certificate as `name`."""
    authorization = f"Authorization: Bearer {token}\r\n" if token else ""
    request = f"GET {target} HTTP/1.1\r\nHost: {name}\r\n{authorization}Connection: close\r\n\r\n"
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        trust.wrap_socket(raw, server_hostname=name) as tls,
    ):
        tls.sendall(request.encode())
        response = b""
        while chunk := tls.recv(65536):
            response += chunk
    head, _, body = response.decode().partition("\r\n\r\n")
    return int(head.split()[1]), body
