"""How a load test shares the machine's cores between the servers it starts and itself."""

from __future__ import annotations

import os

import pytest

from carebench.loadgen import runner


@pytest.mark.parametrize(
    ("cpus", "processes", "expected"),
    [
        ({0, 1}, 1, ({0}, {1})),
        ({0, 1, 2, 3}, 2, ({0, 1}, {2, 3})),
        ({0, 1}, 2, (None, None)),  # no core left for the generator: nothing pinned
        ({0}, 1, (None, None)),
    ],
)
def test_a_core_per_server_process_while_one_is_left(
    monkeypatch: pytest.MonkeyPatch,
    cpus: set[int],
    processes: int,
    expected: tuple[set[int] | None, set[int] | None],
) -> None:
    """Each server process gets a core when the generator keeps one; else everyone shares."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: cpus)
    assert runner.split_cpus(processes) == expected
