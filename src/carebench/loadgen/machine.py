"""A description of the machine a result came from, recorded with every published figure."""

from __future__ import annotations

import datetime as dt
import os
import platform
from importlib import metadata
from typing import NotRequired, TypedDict

from carebench.loadgen import compiled

KEY_PACKAGES = ("uvicorn", "uvloop", "httptools", "msgspec", "hdrhistogram", "prometheus-client")


class MachineDescription(TypedDict):
    cpu_model: str
    cores: int | None
    memory_bytes: int | None
    os: str
    python: str
    #: Distribution name -> version, or "not installed".
    packages: dict[str, str]
    #: When the description was taken (as a run starts), ISO 8601 in UTC.
    date: str
    #: How the load generator's request path ran: module -> "compiled" or "python (<why>)".
    load_generator: NotRequired[dict[str, str]]


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def package_versions() -> dict[str, str]:
    versions = {}
    for name in KEY_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def describe_machine() -> MachineDescription:
    """CPU model, core count, RAM, OS, Python and key package versions, and the date."""
    return {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "memory_bytes": memory_bytes(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "packages": package_versions(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "load_generator": compiled.status(),
    }
