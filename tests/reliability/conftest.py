"""Shared by the reliability suite: each test notes what it tried and what held as figures.

A test takes the `figures` fixture and adds numbers to it (requests sent, malformed inputs,
faults, signals, 5xx, tracebacks, RSS drift, recovery times...). When
CAREBENCH_RELIABILITY_FIGURES names a file, every test's figures are appended to it as one
JSON line with the test's part (its module's `PART`), id and outcome; `make reliability`
renders those lines into RELIABILITY.md. Zeros are figures too: add them, they are what the
document states as measured zeros.

CAREBENCH_RELIABILITY_LONG=1 selects the long variants (`make reliability`); `make test` runs
the short ones.
"""

from __future__ import annotations

import json
import os
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

FIGURES_ENV = "CAREBENCH_RELIABILITY_FIGURES"
LONG_ENV = "CAREBENCH_RELIABILITY_LONG"

Figure = int | float | str | bool


def long_runs() -> bool:
    """True when the long variants were asked for (`make reliability`)."""
    return os.environ.get(LONG_ENV, "") == "1"


@dataclass(slots=True)
class Figures:
    """One test's figures, written out after the test when CAREBENCH_RELIABILITY_FIGURES is set."""

    part: str
    test: str
    values: dict[str, Figure] = field(default_factory=dict)

    def add(self, **values: Figure) -> None:
        """Record figures by name, e.g. `figures.add(requests=500, server_errors=0)`."""
        self.values.update(values)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    # The outcome of the test body, for the figures' "held" column.
    report = yield
    if report.when == "call":
        item.stash[_OUTCOME] = report.outcome
    return report


_OUTCOME = pytest.StashKey[str]()


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Iterator[Figures]:
    part = getattr(request.module, "PART", request.module.__name__.rsplit(".", 1)[-1])
    noted = Figures(part=part, test=request.node.nodeid)
    yield noted
    target = os.environ.get(FIGURES_ENV)
    if not target or not noted.values:
        return
    line = {
        "part": noted.part,
        "test": noted.test,
        "outcome": request.node.stash.get(_OUTCOME, "error"),
        "figures": noted.values,
    }
    with Path(target).open("a", encoding="utf-8") as out:
        out.write(json.dumps(line) + "\n")
