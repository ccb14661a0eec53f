"""The image: the Dockerfile's user is the one the manifests run as, its build context
(.dockerignore) holds what the package build reads, its HEALTHCHECK script finds a live
server over HTTP or HTTPS, and, where a Docker daemon answers, the image builds and runs
`carebench --version`."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import tomllib
import uuid
from pathlib import Path
from types import ModuleType

import pytest

from carebench import __version__
from carebench.server.process import ServerProcess
from carebench.server.startup import free_port
from tests.deploy import manifests
from tests.deploy.manifests import ROOT
from tests.tls.pki import Pki

DOCKERFILE = ROOT / "Dockerfile"
HEALTHCHECK = ROOT / "deploy" / "docker" / "healthcheck.py"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments left out."""
    joined = text.replace("\\\n", " ")
    lines = (line.strip() for line in joined.splitlines())
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def dockerfile() -> list[tuple[str, str]]:
    return instructions(DOCKERFILE.read_text(encoding="utf-8"))


def copied_sources(steps: list[tuple[str, str]]) -> list[str]:
    """The build-context paths COPY reads (not those copied from another stage)."""
    sources = []
    for name, args in steps:
        if name == "COPY" and not args.startswith("--from"):
            sources += args.split()[:-1]
    return sources


def let_in(dockerignore: str) -> list[str]:
    """What a `*` then `!path` .dockerignore lets into the build context."""
    patterns = [line.strip() for line in dockerignore.splitlines() if line.strip()]
    patterns = [line for line in patterns if not line.startswith("#")]
    assert patterns[0] == "*", "the context starts empty and lets paths in one by one"
    return [line[1:].rstrip("/") for line in patterns if line.startswith("!")]


def left_out(sources: list[str], allowed: list[str]) -> list[str]:
    return [
        source
        for source in sources
        if not any(source == path or source.startswith(path + "/") for path in allowed)
    ]


def test_image_runs_as_the_manifests_non_root_user() -> None:
    """USER is numeric, not root, and the uid:gid the Deployment's and Job's pods run as."""
    (user,) = [args for name, args in dockerfile() if name == "USER"]
    uid, gid = (int(part) for part in user.split(":"))
    assert uid != 0
    for workload in (manifests.one("Deployment"), manifests.one("Job")):
        context = manifests.pod_spec(workload)["securityContext"]
        assert (context["runAsUser"], context["runAsGroup"]) == (uid, gid)


def test_build_context_holds_what_the_build_reads() -> None:
    """Every COPY source is let in by .dockerignore, and so are the files the package build
    reads (pyproject's readme and version file); a COPY of a path left out is caught."""
    allowed = let_in((ROOT / ".dockerignore").read_text(encoding="utf-8"))
    sources = copied_sources(dockerfile())
    assert left_out(sources, allowed) == []
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    needed = [project["project"]["readme"], project["tool"]["hatch"]["version"]["path"]]
    assert left_out(needed, sources) == []
    assert left_out(["tests/conftest.py"], allowed) == ["tests/conftest.py"]


def test_image_entrypoint_and_healthcheck() -> None:
    """A slim base, carebench as the ENTRYPOINT (PID 1, so serve gets SIGTERM and drains), and
    a HEALTHCHECK running the shipped script that COPY puts where it says."""
    steps = dockerfile()
    bases = [args for name, args in steps if name == "ARG" and args.startswith("PYTHON_IMAGE=")]
    assert bases and "-slim" in bases[0]
    assert ("ENTRYPOINT", '["carebench"]') in steps
    (check,) = [args for name, args in steps if name == "HEALTHCHECK"]
    script = check.split('"')[-2]
    copy = f"deploy/docker/{HEALTHCHECK.name} {script}"
    assert ("COPY", copy) in steps


HADOLINT = shutil.which("hadolint") or shutil.which(
    "hadolint", path=str(Path(sys.executable).parent)
)


def hadolint(dockerfile: str) -> subprocess.CompletedProcess[str]:
    assert HADOLINT is not None
    return subprocess.run(
        [HADOLINT, "-"], input=dockerfile, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.skipif(
    HADOLINT is None, reason="hadolint is not installed (the dev extra has it on x86-64 Linux)"
)
def test_dockerfile_passes_hadolint() -> None:
    """hadolint (Dockerfile best practices and ShellCheck on RUN) finds nothing; a Dockerfile
    that ends as root and pins no base version is caught."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    clean = hadolint(text)
    assert clean.returncode == 0, clean.stdout
    broken = text.replace("ARG PYTHON_IMAGE=python:3.11-slim-bookworm", "ARG PYTHON_IMAGE=python")
    broken = broken.replace("USER 10001:10001", "USER root")
    found = hadolint(broken)
    assert found.returncode != 0 and "DL3002" in found.stdout, found.stdout


def healthcheck_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("carebench_healthcheck", HEALTHCHECK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_healthcheck_tries_the_configured_scheme_first() -> None:
    """HTTPS first when CAREBENCH_TLS_CERT is set, HTTP first otherwise."""
    check = healthcheck_module()
    assert check.schemes({"CAREBENCH_TLS_CERT": "/etc/cert.pem"}) == ("https", "http")
    assert check.schemes({}) == ("http", "https")


@pytest.mark.slow
def test_healthcheck_finds_a_live_server_or_says_it_is_not(pki: Pki) -> None:
    """Exit 0 for a server over HTTP, and over HTTPS whether or not the environment says TLS
    (its certificate is not the point); exit 1 on a port nobody listens on."""
    check = healthcheck_module()
    tls = ["--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key)]
    for args, environment in (([], {}), (tls, {"CAREBENCH_TLS_CERT": "set"}), (tls, {})):
        with ServerProcess(["--quiet", *args]) as server:
            port = server.url.rsplit(":", 1)[1]
            assert check.main({**environment, "CAREBENCH_PORT": port}) == 0
    assert check.main({"CAREBENCH_PORT": str(free_port("127.0.0.1"))}) == 1


def _docker_unavailable() -> str | None:
    docker = shutil.which("docker")
    if docker is None:
        return "the docker CLI is not installed"
    info = subprocess.run([docker, "info"], capture_output=True, text=True, timeout=30, check=False)
    if info.returncode != 0:
        return "no Docker daemon answers `docker info` on this machine: the image is not built"
    return None


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_image_builds_and_runs_carebench(tmp_path: Path) -> None:
    """`docker build` succeeds and `docker run IMAGE --version` prints carebench's version,
    as the image's non-root user on a read-only root filesystem."""
    reason = _docker_unavailable()
    if reason is not None:
        pytest.skip(reason)
    tag = f"carebench-test:{uuid.uuid4().hex[:12]}"
    build = subprocess.run(
        ["docker", "build", "-t", tag, str(ROOT)], capture_output=True, text=True, check=False
    )
    assert build.returncode == 0, build.stderr[-3000:]
    try:
        run = subprocess.run(
            ["docker", "run", "--rm", "--read-only", tag, "--version"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert run.returncode == 0, run.stderr
        assert run.stdout.strip() == f"carebench {__version__}"
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, check=False)
