"""The terminal line that says where each --generators process ran."""

from __future__ import annotations

from carebench.loadgen.results import GeneratorRun
from carebench.report.terminal import generators_line


def run(index: int, cpus: list[int], shares: bool | None) -> GeneratorRun:
    return {
        "index": index,
        "cpus": cpus,
        "shares_server_core": shares,
        "requests": 100 + index,
        "cpu_seconds": 0.5,
    }


def test_each_generator_is_placed_and_shared_cores_are_named() -> None:
    """Two generators on one spare core: the line says so, and not that the server's is used."""
    line = generators_line([run(0, [1], False), run(1, [1], False)])
    assert line.startswith("2 generator processes, results merged exactly: ")
    assert "#0 on CPU 1 (100 requests, 0.50 s CPU), #1 on CPU 1 (101 requests" in line
    assert "sharing CPU 1: fewer spare cores than generators" in line
    assert "server's core" not in line
    assert "unknown" not in line


def test_a_generator_on_the_servers_core_is_named() -> None:
    """Unpinned on a one-CPU machine: each generator is on the server's core, and says so."""
    line = generators_line([run(0, [], True), run(1, [], True)])
    assert "#0 on CPU any" in line
    assert "#0, #1 on the server's core" in line


def test_a_targets_cpus_are_unknown() -> None:
    """With --target nobody knows the server's CPUs: the line says that instead."""
    line = generators_line([run(0, [0], None), run(1, [1], None)])
    assert line.endswith("; the target's CPUs are unknown")
    assert "sharing" not in line
