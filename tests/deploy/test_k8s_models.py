"""Every shipped object is a valid Kubernetes object: the official client's models load it and
write it back unchanged (a misspelt or misplaced field would be dropped, so the round trip
differs); it passes the API's own OpenAPI schemas, strictly (no unknown field), for the oldest
and the newest Kubernetes that kubernetes-validate ships; `kubectl kustomize` renders the
server's set; and where a cluster is configured `kubectl apply --dry-run=client` accepts it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes.client import ApiClient

from tests.deploy import manifests
from tests.deploy.manifests import K8S, SERVER_FILES, Manifest

KUBECTL = shutil.which("kubectl")
#: The oldest Kubernetes the manifests are checked against (autoscaling/v2 and policy/v1 are
#: older; kubernetes-validate ships schemas from 1.25 on), and the newest it ships.
KUBERNETES_VERSIONS = ("1.25.0", kubernetes_validate.latest_version())
_CLIENT = ApiClient()


def model_name(obj: Manifest) -> str:
    """apps/v1 Deployment -> V1Deployment, autoscaling/v2 HorizontalPodAutoscaler ->
    V2HorizontalPodAutoscaler: the client's class for the object's group version."""
    name: str = obj["apiVersion"].split("/")[-1].capitalize() + obj["kind"]
    return name


def round_trip(obj: Manifest) -> Any:
    """The object as the client's model reads it and writes it back (ValidationError when a
    field has the wrong type or a required one is missing)."""
    model = _CLIENT.deserialize(json.dumps(obj), model_name(obj), "application/json")
    return _CLIENT.sanitize_for_serialization(model)  # type: ignore[no-untyped-call]


@pytest.mark.parametrize("obj", manifests.all_objects(), ids=lambda obj: obj["kind"])
def test_object_is_a_valid_kubernetes_model(obj: Manifest) -> None:
    """Each object loads as its kubernetes client model and comes back field for field."""
    assert round_trip(obj) == obj


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("obj", manifests.all_objects(), ids=lambda obj: obj["kind"])
def test_object_passes_the_api_schema(obj: Manifest, version: str) -> None:
    """Each object validates against that Kubernetes version's schema, unknown fields refused."""
    kubernetes_validate.validate(obj, version, strict=True)


def test_schema_catches_a_misplaced_field_and_a_wrong_type() -> None:
    """A field in the wrong place and a port that is not a number both fail the schema."""
    deployment = manifests.one("Deployment")
    deployment["spec"]["terminationGracePeriodSeconds"] = 30  # belongs to the pod spec
    service = manifests.one("Service")
    service["spec"]["ports"][0]["port"] = "https"
    for broken in (deployment, service):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)


def test_every_kind_is_shipped() -> None:
    """The issue's set: Deployment, Service, HPA (autoscaling/v2), PDB, ConfigMap and a Job."""
    kinds = {(obj["apiVersion"], obj["kind"]) for obj in manifests.all_objects()}
    assert kinds == {
        ("apps/v1", "Deployment"),
        ("v1", "Service"),
        ("autoscaling/v2", "HorizontalPodAutoscaler"),
        ("policy/v1", "PodDisruptionBudget"),
        ("v1", "ConfigMap"),
        ("batch/v1", "Job"),
    }


def test_round_trip_catches_a_misspelt_field() -> None:
    """A field the model does not know (readinesProbe) is dropped, so the round trip differs."""
    deployment = manifests.one("Deployment")
    server = manifests.container(deployment, "carebench")
    server["readinesProbe"] = server.pop("readinessProbe")
    assert round_trip(deployment) != deployment


def test_model_refuses_a_wrong_type() -> None:
    """A Service port that is not a number does not load."""
    service = manifests.one("Service")
    service["spec"]["ports"][0]["port"] = None
    with pytest.raises(ValueError, match="port"):
        round_trip(service)


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
def test_kustomize_renders_the_server_objects() -> None:
    """`kubectl kustomize deploy/k8s` (offline) renders exactly the server's files, image tag
    included."""
    assert KUBECTL is not None
    run = subprocess.run(
        [KUBECTL, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60, check=False
    )
    assert run.returncode == 0, run.stderr
    rendered = {(obj["kind"], obj["metadata"]["name"]) for obj in yaml.safe_load_all(run.stdout)}
    shipped = {
        (obj["kind"], obj["metadata"]["name"])
        for name in SERVER_FILES
        for obj in manifests.load(name)
    }
    assert rendered == shipped
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    assert tuple(listed["resources"]) == SERVER_FILES


def _cluster_configured() -> bool:
    # Without a kubeconfig kubectl asks localhost:8080, where a carebench server may be running.
    config = os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
    return any(Path(part).is_file() for part in config.split(os.pathsep) if part)


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
@pytest.mark.skipif(
    not _cluster_configured(),
    reason="no kubeconfig: `kubectl apply --dry-run=client` still asks an API server for its "
    "resource types (even with --validate=false), so it needs a cluster",
)
@pytest.mark.parametrize("source", [["-k", str(K8S)], ["-f", str(K8S / manifests.JOB_FILE)]])
def test_kubectl_client_dry_run_accepts(source: list[str]) -> None:
    """`kubectl apply --dry-run=client` accepts the server's kustomization and the Job."""
    assert KUBECTL is not None
    run = subprocess.run(
        [KUBECTL, "apply", "--dry-run=client", *source],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
