"""A stand-in for the kubelet: what a container of the manifests would see, laid out under a
temporary directory so carebench's own code can read it.

Secret files are written where the container mounts them (below `root`), with contents made
for the test session: a CA and a server certificate naming the Service (trustme), and a JWT
key pair (`carebench token --new-key`'s). CAREBENCH_* values that are paths below a mount are
moved below `root` too; everything else is passed through unchanged.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from carebench.auth.tokens import new_key_pair
from carebench.settings import ENV_PREFIX
from tests.deploy import manifests
from tests.deploy.manifests import Manifest

SecretData = dict[str, dict[str, bytes]]


def make_secrets(directory: Path, service: str, namespace: str = "default") -> SecretData:
    """The two Secrets docs/deploy.md has the user create, as the files they would hold."""
    authority = trustme.CA()
    leaf = authority.issue_cert(
        service,
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.cluster.local",
        "127.0.0.1",
    )
    private, public, _ = new_key_pair(str(directory / "jwt"))
    secrets = {
        "carebench-tls": {
            "tls.crt": b"".join(blob.bytes() for blob in leaf.cert_chain_pems),
            "tls.key": leaf.private_key_pem.bytes(),
            "ca.crt": authority.cert_pem.bytes(),
        },
        "carebench-jwt": {"public.pem": public.read_bytes(), "private.pem": private.read_bytes()},
    }
    assert {name: set(data) for name, data in secrets.items()} == {
        name: set(keys) for name, keys in manifests.SECRET_KEYS.items()
    }
    return secrets


@dataclass(frozen=True)
class ContainerView:
    """One container's files (below `root`) and CAREBENCH_* environment (paths moved there)."""

    root: Path
    mounts: tuple[str, ...]
    environment: dict[str, str]

    def path(self, container_path: str) -> str:
        """Where a path inside the container is on this machine (unchanged if not mounted)."""
        if any(container_path.startswith(mount + "/") for mount in self.mounts):
            return str(self.root) + container_path
        return container_path

    @contextlib.contextmanager
    def applied(self, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
        """This environment and no other CAREBENCH_* variable, while the block runs (the CLI
        reads its environment defaults when it builds its parser)."""
        for name in os.environ:
            if name.startswith(ENV_PREFIX):
                monkeypatch.delenv(name)
        for name, value in self.environment.items():
            monkeypatch.setenv(name, value)
        yield


def view(root: Path, workload: Manifest, name: str, secrets: SecretData) -> ContainerView:
    """Lay out container `name` of `workload` below `root` as the kubelet would."""
    item = manifests.container(workload, name)
    mounts = tuple(manifests.mount_paths(workload, item))
    for path in mounts:
        (root / path.lstrip("/")).mkdir(parents=True, exist_ok=True)
    for path, secret, key in manifests.mounted_files(workload, item):
        assert key in secrets.get(secret, {}), f"{path}: Secret {secret} has no key {key}"
        (root / path.lstrip("/")).write_bytes(secrets[secret][key])
    shell = ContainerView(root, mounts, {})
    values = manifests.carebench_variables(manifests.environment(item, manifests.config_maps()))
    return ContainerView(root, mounts, {key: shell.path(value) for key, value in values.items()})


def arguments(view: ContainerView, args: list[str]) -> list[str]:
    """Container arguments with mounted paths moved below the view's root."""
    return [view.path(arg) for arg in args]
