"""The load-test Job against carebench's own command line: its init container's `carebench
token` and its `carebench loadtest` parse with the real parser; the token is one the
Deployment's server accepts, with the scopes the run needs, and outlives the Job; the load
test targets the Service over HTTPS with the CA and token the Job mounts; no server setting
leaks into it (with --target it would be refused). The last test runs the Job's load test,
shortened, against a real server started with the Deployment's settings."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from carebench.auth.bearer import JwtVerifier, load_keys
from carebench.auth.scopes import ALLOW
from carebench.cli import main
from carebench.cli.loadtest import build_plan
from carebench.cli.options import from_args
from carebench.cli.token import TokenRequest
from carebench.errors import ConfigError
from carebench.loadgen.runner import RunPlan
from carebench.models import READ
from carebench.server.process import ServerProcess
from tests.deploy import kubelet, manifests
from tests.deploy.commands import env_settings, subparser
from tests.deploy.manifests import Manifest

TOKEN, LOADTEST, SERVER = "token", "loadtest", "carebench"


@pytest.fixture(scope="module")
def secrets(tmp_path_factory: pytest.TempPathFactory) -> kubelet.SecretData:
    service = manifests.one("Service")["metadata"]["name"]
    return kubelet.make_secrets(tmp_path_factory.mktemp("secrets"), service)


def token_command(job: Manifest) -> tuple[list[str], str]:
    """The init container's `carebench token` arguments and the file it writes."""
    command = manifests.container(job, TOKEN)["command"]
    assert command[:2] == ["sh", "-c"], "the init container redirects carebench token's output"
    words = shlex.split(command[2])
    assert words[0] == "carebench" and words[-2] == ">", words
    return words[1:-2], words[-1]


def mint(
    job: Manifest, root: Path, secrets: kubelet.SecretData, monkeypatch: pytest.MonkeyPatch
) -> str:
    """Run the init container's command (carebench's own main, in process) as the pod would."""
    view = kubelet.view(root, job, TOKEN, secrets)
    argv, output = token_command(job)
    assert any(output.startswith(mount + "/") for mount in view.mounts), "the token is lost"
    printed = io.StringIO()
    with view.applied(monkeypatch), contextlib.redirect_stdout(printed):
        assert main(kubelet.arguments(view, argv)) == 0
    Path(view.path(output)).write_text(printed.getvalue(), encoding="ascii")
    return printed.getvalue().strip()


def load_plan(
    job: Manifest, root: Path, secrets: kubelet.SecretData, monkeypatch: pytest.MonkeyPatch
) -> RunPlan:
    """The load-test container's plan, as `carebench loadtest` builds it in the pod (the files
    it reads, the CA and the minted token, laid out below `root`)."""
    mint(job, root, secrets, monkeypatch)
    view = kubelet.view(root, job, LOADTEST, secrets)
    item = manifests.container(job, LOADTEST)
    assert "command" not in item, "the image's ENTRYPOINT is carebench: give args only"
    args = kubelet.arguments(view, item["args"])
    assert args[0] == "loadtest"
    with view.applied(monkeypatch):
        return build_plan(subparser("loadtest").parse_args(args[1:]))


def test_loadtest_targets_the_service_over_https(
    tmp_path: Path, secrets: kubelet.SecretData, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Job's arguments parse and build a --target plan: the Service's name and port over
    HTTPS, trusting the mounted CA, sending the minted token."""
    job, service = manifests.one("Job"), manifests.one("Service")
    plan = load_plan(job, tmp_path, secrets, monkeypatch)
    name, port = service["metadata"]["name"], service["spec"]["ports"][0]["port"]
    assert plan.mode == "target" and plan.target == f"https://{name}:{port}"
    assert (
        plan.tls.cacert is not None
        and Path(plan.tls.cacert).read_bytes() == secrets["carebench-tls"]["ca.crt"]
    )
    assert plan.load.token and plan.load.headers["Authorization"].startswith("Bearer ey")


def test_a_server_setting_in_the_job_is_refused(
    tmp_path: Path, secrets: kubelet.SecretData, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server setting in the Job (CAREBENCH_LIMIT=40, as a copied envFrom would bring)
    makes the load test refuse to start: it cannot reach a server the Job does not start."""
    job = manifests.one("Job")
    manifests.container(job, LOADTEST)["env"] = [{"name": "CAREBENCH_LIMIT", "value": "40"}]
    with pytest.raises(ConfigError, match="--limit: no effect with --target"):
        load_plan(job, tmp_path, secrets, monkeypatch)


def test_every_carebench_variable_is_a_setting_of_its_command() -> None:
    """Whatever CAREBENCH_* variables the Job's containers get are settings of the command each
    runs, and none comes from the server's ConfigMap."""
    job = manifests.one("Job")
    for name, command in ((TOKEN, "token"), (LOADTEST, "loadtest")):
        item = manifests.container(job, name)
        assert "envFrom" not in item
        variables = manifests.carebench_variables(
            manifests.environment(item, manifests.config_maps())
        )
        assert set(variables) <= set(env_settings(command))


def test_token_is_accepted_by_the_deployments_server(
    tmp_path: Path, secrets: kubelet.SecretData, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The minted token verifies with the public key the server mounts and the issuer and
    audience it expects, and grants patient reads and the /health and /metrics the load test
    reads from beyond loopback."""
    token = mint(manifests.one("Job"), tmp_path / "job", secrets, monkeypatch)
    deployment = manifests.one("Deployment")
    server = kubelet.view(tmp_path / "server", deployment, SERVER, secrets)
    with server.applied(monkeypatch):
        auth = subparser("serve").parse_args([])
    key = getattr(auth, "AuthConfig.jwt_key")
    verifier = JwtVerifier(
        load_keys(key),
        getattr(auth, "AuthConfig.jwt_issuer"),
        getattr(auth, "AuthConfig.jwt_audience"),
    )
    grant = verifier.verify(token).grant
    assert grant.ops and grant.decide(READ) == ALLOW


def token_lifetime_margin(job: Manifest) -> float:
    """How much longer the token lives than the Job may run (activeDeadlineSeconds)."""
    argv, _ = token_command(job)
    request = from_args(
        TokenRequest, subparser("token").parse_args(argv[1:] if argv[0] == "token" else argv)
    )
    deadline: float = job["spec"]["activeDeadlineSeconds"]
    return request.ttl - deadline


def test_token_outlives_the_job() -> None:
    """The token's --ttl exceeds the Job's activeDeadlineSeconds; a shorter one is caught."""
    job = manifests.one("Job")
    assert token_lifetime_margin(job) > 0
    job["spec"]["activeDeadlineSeconds"] = 7200
    assert token_lifetime_margin(job) <= 0


def test_job_never_sees_the_servers_key() -> None:
    """The load test mounts the CA only; the signing key reaches the init container alone."""
    job = manifests.one("Job")
    seen = {
        name: {
            (secret, key)
            for _, secret, key in manifests.mounted_files(job, manifests.container(job, name))
        }
        for name in (TOKEN, LOADTEST)
    }
    assert seen == {
        TOKEN: {("carebench-jwt", "private.pem")},
        LOADTEST: {("carebench-tls", "ca.crt")},
    }


@pytest.mark.slow
def test_jobs_load_test_runs_against_a_server_with_the_deployments_settings(
    tmp_path: Path, secrets: kubelet.SecretData, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real `carebench serve` with the Deployment's environment (on 127.0.0.1 and a free
    port instead of 0.0.0.0:8080) serves the Job's `carebench loadtest`, shortened to one
    second: every request authorised and answered over verified TLS."""
    deployment, job = manifests.one("Deployment"), manifests.one("Job")
    server = kubelet.view(tmp_path / "server", deployment, SERVER, secrets)
    environment = {**server.environment, "CAREBENCH_HOST": "127.0.0.1", "CAREBENCH_SEED": "1"}
    environment.pop("CAREBENCH_PORT", None)
    mint(job, tmp_path / "job", secrets, monkeypatch)
    client = kubelet.view(tmp_path / "job", job, LOADTEST, secrets)
    args = kubelet.arguments(client, manifests.container(job, LOADTEST)["args"])
    with ServerProcess(["--quiet"], env=environment) as process:
        service = manifests.one("Service")
        target = f"https://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}"
        # The certificate names 127.0.0.1 too, so --cacert still verifies the server.
        args[args.index(target)] = process.url
        shortened = _shorten(args, duration="1s", rate="50", warmup="0s")
        run = subprocess.run(
            [sys.executable, "-m", "carebench", *shortened],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env=_clean_env(client.environment),
        )
    assert run.returncode == 0, run.stderr
    (result,) = json.loads(run.stdout)
    assert result["outcomes"]["success"] > 0
    assert result["outcomes"].get("client_error", 0) == 0


def _shorten(args: list[str], **values: str) -> list[str]:
    shortened = list(args)
    for name, value in values.items():
        shortened[shortened.index(f"--{name}") + 1] = value
    return shortened


def _clean_env(extra: dict[str, str]) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("CAREBENCH_")}, **extra}
