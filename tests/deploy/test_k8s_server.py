"""The server's manifests against the server's code: the probes hit routes the app serves, on
the port it listens on, open to the kubelet while the rest is locked; the grace period outlasts
preStop plus the drain; every CAREBENCH_* variable is a `carebench serve` setting; the
settings start a server that passes the secure-by-default check without --insecure."""

from __future__ import annotations

import argparse
import difflib
from pathlib import Path
from typing import Any

import httpx
import pytest

from carebench.cli.options import from_args, server_setup
from carebench.cli.serve import ServeChoice
from carebench.errors import ConfigError
from carebench.server.config import ServerConfig
from carebench.server.setup import ServerSetup
from carebench.server.startup import build_app
from tests.deploy import kubelet, manifests
from tests.deploy.commands import env_settings, subparser
from tests.deploy.manifests import Manifest

SERVER = "carebench"
#: Where the kubelet's probes come from: the node, never the pod's loopback.
NODE = ("10.244.0.1", 41234)


@pytest.fixture(scope="module")
def secrets(tmp_path_factory: pytest.TempPathFactory) -> kubelet.SecretData:
    return kubelet.make_secrets(
        tmp_path_factory.mktemp("secrets"), manifests.one("Service")["metadata"]["name"]
    )


def serve_args(
    deployment: Manifest, root: Path, secrets: kubelet.SecretData, monkeypatch: pytest.MonkeyPatch
) -> tuple[argparse.Namespace, kubelet.ContainerView]:
    """The Deployment's container as `carebench serve` parses it (args after the image's
    ENTRYPOINT, environment from the ConfigMap and env), its files laid out below `root`."""
    view = kubelet.view(root, deployment, SERVER, secrets)
    item = manifests.container(deployment, SERVER)
    assert "command" not in item, "the image's ENTRYPOINT is carebench: give args only"
    args = kubelet.arguments(view, item["args"])
    assert args[0] == "serve"
    with view.applied(monkeypatch):
        namespace = subparser("serve").parse_args(args[1:])
    return namespace, view


def setup_of(namespace: argparse.Namespace) -> ServerSetup:
    return server_setup(namespace)


def test_every_carebench_variable_is_a_serve_setting() -> None:
    """The ConfigMap's keys and the Deployment's env are all variables `carebench serve` reads."""
    known = env_settings("serve")
    unknown = [name for name in _server_variables(manifests.one("Deployment")) if name not in known]
    assert unknown == []


def test_a_misspelt_variable_is_caught() -> None:
    """A typo in the ConfigMap (CAREBENCH_DRAIN_TIMOUT) is not a setting, and the closest one is
    the intended one: the check above would name it."""
    deployment = manifests.one("Deployment")
    manifests.container(deployment, SERVER)["env"].append(
        {"name": "CAREBENCH_DRAIN_TIMOUT", "value": "5s"}
    )
    known = env_settings("serve")
    unknown = [name for name in _server_variables(deployment) if name not in known]
    assert unknown == ["CAREBENCH_DRAIN_TIMOUT"]
    assert difflib.get_close_matches(unknown[0], known, n=1) == ["CAREBENCH_DRAIN_TIMEOUT"]


def _server_variables(deployment: Manifest) -> list[str]:
    item = manifests.container(deployment, SERVER)
    return list(manifests.carebench_variables(manifests.environment(item, manifests.config_maps())))


def test_settings_start_a_locked_server_without_insecure(
    tmp_path: Path, secrets: kubelet.SecretData, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The manifests' settings parse, load the mounted certificate and JWT key, and pass the
    secure-by-default check for a non-loopback --host: auth and TLS, no --insecure."""
    namespace, _ = serve_args(manifests.one("Deployment"), tmp_path, secrets, monkeypatch)
    setup = setup_of(namespace)
    assert setup.server.host == "0.0.0.0" and setup.server.tls
    assert setup.auth.auth == "jwt" and not setup.auth.insecure


def test_dropping_tls_is_refused(
    tmp_path: Path, secrets: kubelet.SecretData, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the certificate and key the same manifests would not start: exit 2, naming
    --insecure (which they do not set)."""
    deployment = manifests.one("Deployment")
    item = manifests.container(deployment, SERVER)
    item["env"] = [
        v for v in item["env"] if v["name"] not in ("CAREBENCH_TLS_CERT", "CAREBENCH_TLS_KEY")
    ]
    namespace, _ = serve_args(deployment, tmp_path, secrets, monkeypatch)
    with pytest.raises(ConfigError, match=r"refusing to listen.*--tls-cert.*--insecure"):
        setup_of(namespace)


def test_file_settings_point_into_mounted_secret_files() -> None:
    """Each FILE setting (certificate, key, JWT key) names a file a Secret volume puts there."""
    deployment = manifests.one("Deployment")
    assert _unmounted_files(deployment) == []
    manifests.container(deployment, SERVER)["env"][0]["value"] = "/etc/carebench/tls/cert.pem"
    assert _unmounted_files(deployment) == ["CAREBENCH_TLS_CERT"]


def _unmounted_files(deployment: Manifest) -> list[str]:
    item = manifests.container(deployment, SERVER)
    files = {path for path, _, _ in manifests.mounted_files(deployment, item)}
    known = env_settings("serve")
    values = manifests.carebench_variables(manifests.environment(item, manifests.config_maps()))
    return [
        name
        for name, value in values.items()
        if known[name].setting.metavar == "FILE" and value not in files
    ]


def test_server_pods_never_see_the_signing_key_or_the_ca() -> None:
    """The server mounts its certificate, its key and the JWT public key, nothing more."""
    deployment = manifests.one("Deployment")
    item = manifests.container(deployment, SERVER)
    seen = {(secret, key) for _, secret, key in manifests.mounted_files(deployment, item)}
    assert seen == {
        ("carebench-tls", "tls.crt"),
        ("carebench-tls", "tls.key"),
        ("carebench-jwt", "public.pem"),
    }


def probe_paths(deployment: Manifest) -> dict[str, dict[str, Any]]:
    item = manifests.container(deployment, SERVER)
    return {kind: item[kind]["httpGet"] for kind in ("livenessProbe", "readinessProbe")}


async def served_paths(app: Any) -> set[str]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="https://pod"
    ) as client:
        document = (await client.get("/openapi.json")).json()
    return set(document["paths"])


async def test_probes_hit_routes_open_to_the_kubelet(
    tmp_path: Path, secrets: kubelet.SecretData, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The app the manifests' settings build serves both probe paths (they are in its own
    OpenAPI document) and answers them from the node without a token, while /health is locked:
    liveness 200, readiness its own document (503 `starting` until start-up)."""
    namespace, _ = serve_args(manifests.one("Deployment"), tmp_path, secrets, monkeypatch)
    app = build_app(from_args(ServeChoice, namespace).pattern, setup_of(namespace))
    probes = probe_paths(manifests.one("Deployment"))
    assert {probe["path"] for probe in probes.values()} <= await served_paths(app)
    transport = httpx.ASGITransport(app=app, client=NODE)
    async with httpx.AsyncClient(transport=transport, base_url="https://pod") as node:
        live = await node.get(probes["livenessProbe"]["path"])
        ready = await node.get(probes["readinessProbe"]["path"])
        locked = await node.get("/health")
    assert live.status_code == 200 and live.json()["status"] == "live"
    assert ready.status_code == 503 and ready.json()["status"] == "starting"
    assert locked.status_code == 401


async def test_a_wrong_probe_path_is_caught(
    tmp_path: Path, secrets: kubelet.SecretData, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A probe on a path the app does not serve (/healthz) fails the check above."""
    namespace, _ = serve_args(manifests.one("Deployment"), tmp_path, secrets, monkeypatch)
    app = build_app(from_args(ServeChoice, namespace).pattern, setup_of(namespace))
    assert "/healthz" not in await served_paths(app)


def port_problems(
    deployment: Manifest, service: Manifest, environment: dict[str, str]
) -> list[str]:
    """Why the probes or the Service would miss the port the server listens on."""
    item = manifests.container(deployment, SERVER)
    listens = int(environment.get("CAREBENCH_PORT", ServerConfig().port))
    scheme = "HTTPS" if "CAREBENCH_TLS_CERT" in environment else "HTTP"
    ports = {port["name"]: port["containerPort"] for port in item["ports"]}
    problems = []
    for kind, probe in probe_paths(deployment).items():
        port = ports.get(probe["port"], probe["port"])
        if port != listens:
            problems.append(
                f"{kind} port {probe['port']} is {port}, the server listens on {listens}"
            )
        if probe.get("scheme", "HTTP") != scheme:
            problems.append(f"{kind} speaks {probe.get('scheme', 'HTTP')}, the server {scheme}")
    problems.extend(
        f"Service port {port['port']} targets {port['targetPort']}, not {listens}"
        for port in service["spec"]["ports"]
        if ports.get(port["targetPort"], port["targetPort"]) != listens
    )
    return problems


def test_probes_and_service_reach_the_listening_port() -> None:
    """Probe ports and the Service's targetPort name the container port CAREBENCH_PORT opens,
    over HTTPS as the server speaks; a changed port or scheme is caught."""
    deployment, service = manifests.one("Deployment"), manifests.one("Service")
    environment = manifests.environment(
        manifests.container(deployment, SERVER), manifests.config_maps()
    )
    assert port_problems(deployment, service, environment) == []
    assert len(port_problems(deployment, service, {**environment, "CAREBENCH_PORT": "9090"})) == 3
    plain = {key: value for key, value in environment.items() if key != "CAREBENCH_TLS_CERT"}
    assert len(port_problems(deployment, service, plain)) == 2


def grace_margin(deployment: Manifest) -> float:
    """terminationGracePeriodSeconds less the preStop sleep and the server's drain timeout."""
    spec = manifests.pod_spec(deployment)
    item = manifests.container(deployment, SERVER)
    command = item["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep" and len(command) == 2
    environment = manifests.environment(item, manifests.config_maps())
    drain = env_settings("serve")["CAREBENCH_DRAIN_TIMEOUT"]
    text = environment.get(drain.setting.env)
    drain_timeout = drain.setting.kind.parse(text) if text is not None else drain.default
    grace: float = spec["terminationGracePeriodSeconds"] - float(command[1]) - drain_timeout
    return grace


def test_grace_period_outlasts_prestop_and_drain() -> None:
    """The kubelet waits longer than the preStop sleep plus --drain-timeout before SIGKILL;
    a shorter grace period or a longer drain is caught."""
    deployment = manifests.one("Deployment")
    assert grace_margin(deployment) > 0
    manifests.pod_spec(deployment)["terminationGracePeriodSeconds"] = 15
    assert grace_margin(deployment) <= 0
    maps = manifests.config_maps()
    maps["carebench"]["CAREBENCH_DRAIN_TIMEOUT"] = "30s"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(manifests, "config_maps", lambda: maps)
        assert grace_margin(manifests.one("Deployment")) <= 0


def test_pod_is_hardened() -> None:
    """Non-root, read-only root filesystem, no capabilities, no privilege escalation, a
    writable /tmp, requests and limits (the HPA needs the CPU request)."""
    for workload in (manifests.one("Deployment"), manifests.one("Job")):
        assert manifests.pod_spec(workload)["securityContext"]["runAsNonRoot"] is True
        for item in manifests.containers(workload):
            context = item["securityContext"]
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"]["drop"] == ["ALL"]
            assert {"cpu", "memory"} <= item["resources"]["requests"].keys()
            assert {"cpu", "memory"} <= item["resources"]["limits"].keys()
    server = manifests.container(manifests.one("Deployment"), SERVER)
    assert "/tmp" in manifests.mount_paths(manifests.one("Deployment"), server)


def test_service_pdb_and_hpa_select_the_deployment() -> None:
    """The Service and the PDB select the pods' labels; the HPA scales the Deployment, which
    leaves replicas to it."""
    deployment = manifests.one("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert manifests.one("Service")["spec"]["selector"].items() <= labels.items()
    assert (
        manifests.one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items()
        <= labels.items()
    )
    target = manifests.one("HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert "replicas" not in deployment["spec"]


def service_link_variables(service: Manifest) -> list[str]:
    """The variables Kubernetes puts in every pod of the namespace for a Service unless the pod
    says enableServiceLinks: false (Docker-link style: NAME_PORT, NAME_SERVICE_HOST, ...)."""
    name = service["metadata"]["name"].upper().replace("-", "_")
    names = [f"{name}_SERVICE_HOST", f"{name}_SERVICE_PORT", f"{name}_PORT"]
    for port in service["spec"]["ports"]:
        prefix = f"{name}_PORT_{port['port']}_{port.get('protocol', 'TCP')}"
        names += [prefix, f"{prefix}_PROTO", f"{prefix}_PORT", f"{prefix}_ADDR"]
        if "name" in port:
            names.append(f"{name}_SERVICE_PORT_{port['name'].upper().replace('-', '_')}")
    return names


def test_service_links_are_off_where_they_would_read_as_settings(
    tmp_path: Path, secrets: kubelet.SecretData, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Service is named carebench, so its link variables (CAREBENCH_PORT=tcp://...) would
    land on serve's --port: every pod turns them off, and with them serve could not start."""
    service = manifests.one("Service")
    colliding = [name for name in service_link_variables(service) if name in env_settings("serve")]
    assert colliding == ["CAREBENCH_PORT"]
    for workload in (manifests.one("Deployment"), manifests.one("Job")):
        assert manifests.pod_spec(workload)["enableServiceLinks"] is False
    deployment = manifests.one("Deployment")
    manifests.container(deployment, SERVER)["env"].append(
        {"name": "CAREBENCH_PORT", "value": "tcp://10.96.0.12:8443"}
    )
    with pytest.raises(SystemExit) as exit_status:
        serve_args(deployment, tmp_path, secrets, monkeypatch)
    assert exit_status.value.code == 2
