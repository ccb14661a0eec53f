"""The shipped Kubernetes manifests (deploy/k8s) as plain data, and the lookups the tests share.

Objects are the dicts PyYAML reads; tests mutate deep copies of them to show that each check
catches what it is meant to catch.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from carebench.settings import ENV_PREFIX

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
#: The server's objects (kustomization.yaml lists them) and the load test's Job, applied after.
SERVER_FILES = ("configmap.yaml", "deployment.yaml", "service.yaml", "hpa.yaml", "pdb.yaml")
JOB_FILE = "loadtest/job.yaml"
#: The keys of the Secrets docs/deploy.md has the user create; the manifests mount some of each.
SECRET_KEYS = {
    "carebench-tls": ("tls.crt", "tls.key", "ca.crt"),
    "carebench-jwt": ("public.pem", "private.pem"),
}

Manifest = dict[str, Any]


def load(name: str) -> list[Manifest]:
    """The objects of one file under deploy/k8s."""
    with (K8S / name).open(encoding="utf-8") as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc is not None]


def all_objects() -> list[Manifest]:
    """Every object shipped: the server's and the Job."""
    return [obj for name in (*SERVER_FILES, JOB_FILE) for obj in load(name)]


def one(kind: str) -> Manifest:
    """A deep copy of the only object of `kind` (tests may change it freely)."""
    found = [obj for obj in all_objects() if obj["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return copy.deepcopy(found[0])


def pod_spec(workload: Manifest) -> dict[str, Any]:
    """The pod template's spec of a Deployment or Job."""
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def containers(workload: Manifest) -> list[dict[str, Any]]:
    """Init containers, then containers."""
    spec = pod_spec(workload)
    return [*spec.get("initContainers", []), *spec["containers"]]


def container(workload: Manifest, name: str) -> dict[str, Any]:
    found = [item for item in containers(workload) if item["name"] == name]
    assert len(found) == 1, f"no container {name!r}"
    return found[0]


def config_maps() -> dict[str, dict[str, str]]:
    """Each ConfigMap's data by name."""
    return {
        obj["metadata"]["name"]: obj.get("data", {})
        for obj in all_objects()
        if obj["kind"] == "ConfigMap"
    }


def environment(item: dict[str, Any], maps: dict[str, dict[str, str]]) -> dict[str, str]:
    """What a container's process sees as its environment: envFrom ConfigMaps, then env
    (which wins, as in Kubernetes). A ConfigMap it names that is not shipped is an error."""
    values: dict[str, str] = {}
    for source in item.get("envFrom", []):
        name = source["configMapRef"]["name"]
        assert name in maps, f"envFrom names ConfigMap {name!r}, which is not shipped"
        values.update(maps[name])
    for variable in item.get("env", []):
        assert "value" in variable, f"{variable['name']}: only literal values are checked"
        values[variable["name"]] = variable["value"]
    return values


def carebench_variables(values: dict[str, str]) -> dict[str, str]:
    return {name: value for name, value in values.items() if name.startswith(ENV_PREFIX)}


def mounted_files(workload: Manifest, item: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(path in the container, Secret name, key) of every Secret file a container sees."""
    volumes = {volume["name"]: volume for volume in pod_spec(workload).get("volumes", [])}
    for mount in item.get("volumeMounts", []):
        secret = volumes[mount["name"]].get("secret")
        if secret is None:
            continue
        for entry in secret.get("items", []):
            yield f"{mount['mountPath']}/{entry['path']}", secret["secretName"], entry["key"]


def mount_paths(workload: Manifest, item: dict[str, Any]) -> list[str]:
    return [mount["mountPath"] for mount in item.get("volumeMounts", [])]
