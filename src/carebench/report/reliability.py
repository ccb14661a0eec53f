"""Render RELIABILITY.md from one run of the reliability suite (`make reliability`).

    .venv/bin/python -m carebench.report.reliability \\
        --figures results/reliability/figures.jsonl --junit results/reliability/junit.xml \\
        --command "CAREBENCH_RELIABILITY_LONG=1 ... pytest tests/reliability tests/property" \\
        --output RELIABILITY.md

Inputs: the figures every reliability test recorded (one JSON line per test, written by the
`figures` fixture of tests/reliability/conftest.py: part, test id, outcome, figures) and
pytest's JUnit XML of the same run, which gives every test's outcome (also those that record
no figures) and, for the property tests, Hypothesis's statistics (examples run per test).
The machine is described where this runs: run it right after the suite, on the same machine.

Per part: what was tried (the counts named in TRIED, summed), what held (each test's outcome),
the figures (one table per test function, a row per parametrisation), and the measured zeros
(integer figures that were 0 in every run of a test function: stated, not left implicit).
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import sys
import xml.etree.ElementTree as ElementTree
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from carebench.loadgen.machine import MachineDescription, describe_machine
from carebench.report.files import write_atomically

Figure = int | float | str | bool

#: The suite's parts in the order of issue 11: (PART, title, what the part puts the server to).
PARTS = (
    ("contract", "Contract fuzzing", "the served OpenAPI document fuzzed against a live server"),
    ("hostile-http", "Hostile HTTP at the socket", "malformed, oversized, slow and abrupt clients"),
    ("overload", "Overload", "open loop at 10x capacity for each bounded pattern"),
    ("backend-faults", "Backend faults", "outages, slowdowns and error bursts on a schedule"),
    ("shutdown", "Shutdown under load", "SIGTERM, and a second one, while requests are in flight"),
    ("soak", "Soak", "a long run at 80 % of capacity"),
)
PROPERTY_PART = ("property", "Property tests", "Hypothesis on the pure parts")
#: Figures that count what a part tried; summed over its tests in "what was tried".
TRIED = (
    "requests",
    "requests_sent",
    "fuzzing_requests",
    "coverage_requests",
    "checks_run",
    "attacks",
    "attempts",
    "half_closed_bursts",
    "faults_injected",
    "burst_requests",
    "signals",
)
_PASSING = re.compile(r"(\d+) passing, (\d+) failing, and (\d+) invalid test cases")
_STATISTICS = "hypothesis-statistics-"


@dataclass(frozen=True, slots=True)
class Measured:
    """One reliability test's figures line."""

    part: str
    test: str
    outcome: str
    figures: dict[str, Figure]


@dataclass(slots=True)
class Case:
    """One test of the run, from the JUnit XML."""

    nodeid: str
    outcome: str
    seconds: float
    #: Hypothesis examples run (passing + failing, all phases), the failing and the invalid
    #: ones; None for a test without @given.
    examples: int | None = None
    failing: int | None = None
    invalid: int | None = None


@dataclass(slots=True)
class Run:
    """Everything the document is made from."""

    measured: list[Measured]
    cases: list[Case]
    machine: MachineDescription
    commands: list[str]
    started: str = ""
    seconds: float = 0.0
    by_module: dict[str, str] = field(default_factory=dict)

    def part_of(self, case: Case) -> str:
        """A test's part: its module's PART (as its figures say), else the module's name."""
        module = case.nodeid.split("::", 1)[0]
        if module.startswith("tests/property/"):
            return PROPERTY_PART[0]
        if module in self.by_module:
            return self.by_module[module]
        return Path(module).stem.removeprefix("test_").replace("_", "-")


def read_figures(path: Path) -> list[Measured]:
    """The figures lines (a missing file: none recorded)."""
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [
        Measured(item["part"], item["test"], item["outcome"], item["figures"])
        for item in map(json.loads, filter(str.strip, lines))
    ]


def read_junit(path: Path) -> tuple[list[Case], str, float]:
    """Every test case of a pytest JUnit XML report, its start time and duration."""
    root = ElementTree.parse(path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    assert suite is not None, f"{path}: no testsuite"
    statistics = {
        prop.get("name", "")[len(_STATISTICS) :]: base64.b64decode(prop.get("value", "")).decode()
        for prop in suite.iter("property")
        if prop.get("name", "").startswith(_STATISTICS)
    }
    cases = []
    for element in suite.iter("testcase"):
        nodeid = _nodeid(element.get("classname", ""), element.get("name", ""))
        case = Case(nodeid, _outcome(element), float(element.get("time", "0")))
        if nodeid in statistics:
            counts = [tuple(map(int, m)) for m in _PASSING.findall(statistics[nodeid])]
            case.examples = sum(passing + failing for passing, failing, _ in counts)
            case.failing = sum(failing for _, failing, _ in counts)
            case.invalid = sum(invalid for _, _, invalid in counts)
        cases.append(case)
    return cases, suite.get("timestamp", ""), float(suite.get("time", "0"))


def _nodeid(classname: str, name: str) -> str:
    # tests.reliability.test_shutdown[.Class] -> tests/reliability/test_shutdown.py[::Class]
    parts = classname.split(".")
    module = next((i for i, part in enumerate(parts) if part.startswith("test_")), len(parts) - 1)
    path = "/".join(parts[: module + 1]) + ".py"
    return "::".join([path, *parts[module + 1 :], name])


def _outcome(element: ElementTree.Element) -> str:
    for tag, outcome in (("failure", "failed"), ("error", "error"), ("skipped", "skipped")):
        if element.find(tag) is not None:
            return outcome
    return "passed"


def render(run: Run) -> str:
    """The whole document."""
    run.by_module = {m.test.split("::", 1)[0]: m.part for m in run.measured}
    cases_by_part: dict[str, list[Case]] = defaultdict(list)
    for case in run.cases:
        cases_by_part[run.part_of(case)].append(case)
    measured_by_part: dict[str, list[Measured]] = defaultdict(list)
    for item in run.measured:
        measured_by_part[item.part].append(item)
    known = [part for part, _, _ in PARTS] + [PROPERTY_PART[0]]
    extra = sorted((set(cases_by_part) | set(measured_by_part)) - set(known))
    parts = [*PARTS, *((name, name, "tests of this part") for name in extra)]
    lines = [*_header(run), *_summary(parts, cases_by_part, measured_by_part)]
    for part, title, about in parts:
        lines += _part(part, title, about, cases_by_part[part], measured_by_part[part])
    lines += _property_part(cases_by_part[PROPERTY_PART[0]])
    return "\n".join(lines).rstrip("\n") + "\n"


def _header(run: Run) -> list[str]:
    machine = run.machine
    memory = machine["memory_bytes"]
    packages = ", ".join(f"{name} {version}" for name, version in machine["packages"].items())
    lines = [
        "# carebench reliability",
        "",
        "Generated by `make reliability` (carebench.report.reliability) from one run of the "
        "reliability suite and the property tests, long variants. Every number below was "
        "measured in that run; a zero is a measured zero. Issue 11 describes the parts.",
        "",
        "| run | |",
        "| --- | --- |",
        f"| started | {run.started or 'unknown'} |",
        f"| duration | {run.seconds:.0f} s |",
        f"| CPU | {machine['cpu_model']}, {machine['cores']} cores |",
        f"| memory | {memory / 2**30:.1f} GiB |" if memory else "| memory | unknown |",
        f"| OS | {machine['os']} |",
        f"| Python | {machine['python']} |",
        f"| packages | {packages} |",
        "",
        "Commands:",
        "",
        "```",
        *run.commands,
        "```",
        "",
    ]
    return lines


def _summary(
    parts: Sequence[tuple[str, str, str]],
    cases: dict[str, list[Case]],
    measured: dict[str, list[Measured]],
) -> list[str]:
    lines = [
        "| part | tests | passed | failed | skipped | tried |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for part, title, _ in [*parts, PROPERTY_PART]:
        outcomes = _outcomes(cases[part], measured[part])
        tried = _tried(measured[part]) if part != PROPERTY_PART[0] else _examples(cases[part])
        lines.append(
            f"| [{title}](#{_anchor(title)}) | {sum(outcomes.values())} | {outcomes['passed']} "
            f"| {outcomes['failed'] + outcomes['error']} | {outcomes['skipped']} | {tried} |"
        )
    return [*lines, ""]


def _outcomes(cases: list[Case], measured: list[Measured]) -> Counter[str]:
    """Outcomes per test: from the JUnit XML, else from the figures lines."""
    if cases:
        return Counter(case.outcome for case in cases)
    return Counter(item.outcome for item in measured)


def _tried(measured: list[Measured]) -> str:
    totals: Counter[str] = Counter()
    for item in measured:
        for name in TRIED:
            value = item.figures.get(name)
            if isinstance(value, int) and not isinstance(value, bool):
                totals[name] += value
    return ", ".join(f"{total:,} {name.replace('_', ' ')}" for name, total in totals.items())


def _examples(cases: list[Case]) -> str:
    examples = sum(case.examples or 0 for case in cases)
    return f"{examples:,} examples" if examples else ""


def _anchor(title: str) -> str:
    return re.sub(r"[^a-z0-9 -]", "", title.lower()).replace(" ", "-")


def _part(
    part: str, title: str, about: str, cases: list[Case], measured: list[Measured]
) -> list[str]:
    lines = [f"## {title}", "", f"Part `{part}`: {about}.", ""]
    if not cases and not measured:
        return [*lines, "Not run: no test of this part is in this run.", ""]
    outcomes = _outcomes(cases, measured)
    held = ", ".join(f"{n} {outcome}" for outcome, n in sorted(outcomes.items()))
    lines += [f"What held: {held}."]
    tried = _tried(measured)
    lines += [f"What was tried: {tried}." if tried else "What was tried: see the tables.", ""]
    lines += _held_table(cases, measured)
    if not measured:
        return [*lines, "No figures were recorded for this part.", ""]
    for function, items in _by_function(measured).items():
        lines += _figures_table(function, items)
    return lines


def _held_table(cases: list[Case], measured: list[Measured]) -> list[str]:
    rows = [(c.nodeid.split("::", 1)[1], c.outcome, f"{c.seconds:.1f}") for c in cases] or [
        (m.test.split("::", 1)[1], m.outcome, "") for m in measured
    ]
    lines = ["| test | outcome | seconds |", "| --- | --- | ---: |"]
    lines += [f"| `{test}` | {outcome} | {seconds} |" for test, outcome, seconds in rows]
    return [*lines, ""]


def _by_function(measured: Iterable[Measured]) -> dict[str, list[Measured]]:
    groups: dict[str, list[Measured]] = defaultdict(list)
    for item in measured:
        groups[item.test.split("::", 1)[1].split("[", 1)[0]].append(item)
    return groups


def _figures_table(function: str, items: list[Measured]) -> list[str]:
    """A figure/value table for a single run; for several, a row per run with the figures
    that differ between runs (the zeros and the ones alike in every run are stated below)."""
    names = list(dict.fromkeys(name for item in items for name in item.figures))
    zeros = _measured_zeros(items, names)
    lines = [f"### `{function}`", ""]
    if len(items) == 1:
        lines += ["| figure | value |", "| --- | ---: |"]
        lines += [f"| {name} | {_cell(items[0].figures.get(name))} |" for name in names]
        lines.append("")
    else:
        alike = [name for name in _alike(items, names) if name not in zeros]
        varying = [
            name
            for name in names
            if name not in zeros and name not in alike and not _names_the_run(items, name)
        ]
        lines += [
            "| run | outcome | " + " | ".join(varying) + " |",
            "| --- | --- | " + " | ".join(_align(items, name) for name in varying) + " |",
        ]
        for item in items:
            cells = " | ".join(_cell(item.figures.get(name)) for name in varying)
            lines.append(f"| {_run_id(item)} | {item.outcome} | {cells} |")
        lines.append("")
        if alike:
            same = ", ".join(f"{name} = {_cell(items[0].figures[name])}" for name in alike)
            lines += [f"In every run: {same}.", ""]
    if zeros:
        runs = "the run" if len(items) == 1 else f"all {len(items)} runs"
        listed = ", ".join(f"{name} = 0" for name in zeros)
        lines += [f"Measured zeros ({runs}): {listed}.", ""]
    return lines


def _run_id(item: Measured) -> str:
    """The parametrisation of a test id (`test_x[uvicorn-naive]` -> `uvicorn-naive`)."""
    return item.test.split("[", 1)[1].removesuffix("]") if "[" in item.test else "-"


def _names_the_run(items: list[Measured], name: str) -> bool:
    """A figure that only repeats each run's id (`pattern` for `test_x[naive]`)."""
    return all(str(item.figures.get(name)) == _run_id(item) for item in items)


def _align(items: list[Measured], name: str) -> str:
    """Numbers right-aligned, words left."""
    values = [item.figures.get(name) for item in items]
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    return "---:" if numeric else "---"


def _alike(items: list[Measured], names: list[str]) -> list[str]:
    """Figures every run recorded with the same value."""
    first = items[0].figures
    return [
        name
        for name in names
        if all(name in item.figures and item.figures[name] == first.get(name) for item in items)
    ]


def _measured_zeros(items: list[Measured], names: list[str]) -> list[str]:
    """Integer figures that were 0 in every run that recorded them."""
    zeros = []
    for name in names:
        values = [item.figures[name] for item in items if name in item.figures]
        integers = [v for v in values if isinstance(v, int) and not isinstance(v, bool)]
        if integers and len(integers) == len(values) and not any(integers):
            zeros.append(name)
    return zeros


def _cell(value: Figure | None) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value).replace("|", "\\|")


def _property_part(cases: list[Case]) -> list[str]:
    _, title, about = PROPERTY_PART
    lines = [f"## {title}", "", f"{about} (tests/property), by pytest outcome.", ""]
    if not cases:
        return [*lines, "Not run: no property test is in this run.", ""]
    by_file: dict[str, list[Case]] = defaultdict(list)
    for case in cases:
        by_file[case.nodeid.split("::", 1)[0]].append(case)
    lines += [
        "| file | tests | passed | failed | examples | invalid examples |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for path, group in sorted(by_file.items()):
        lines.append(_property_row(f"`{Path(path).name}`", group))
    lines += [_property_row("all", cases), ""]
    failed = [c.nodeid for c in cases if c.outcome in ("failed", "error")]
    failing = sum(case.failing or 0 for case in cases)
    if failed:
        lines += ["Failed: " + ", ".join(f"`{nodeid}`" for nodeid in failed) + ".", ""]
    zeros = [
        f"{name} = 0"
        for name, n in (("failed tests", len(failed)), ("failing examples", failing))
        if n == 0
    ]
    if zeros:
        lines += [f"Measured zeros: {', '.join(zeros)}.", ""]
    else:
        lines += [f"Failing examples: {failing}.", ""]
    return lines


def _property_row(label: str, cases: list[Case]) -> str:
    outcomes = Counter(case.outcome for case in cases)
    examples = sum(case.examples or 0 for case in cases)
    invalid = sum(case.invalid or 0 for case in cases)
    failed = outcomes["failed"] + outcomes["error"]
    return (
        f"| {label} | {len(cases)} | {outcomes['passed']} | {failed} | {examples:,} | {invalid:,} |"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n", 1)[0])
    parser.add_argument("--figures", type=Path, required=True, help="the figures JSON lines")
    parser.add_argument("--junit", type=Path, help="pytest's --junitxml report of the run")
    parser.add_argument(
        "--command", action="append", default=[], help="a command of the run (repeatable)"
    )
    parser.add_argument("--output", type=Path, help="write the document here (default stdout)")
    args = parser.parse_args(argv)
    junit = args.junit if args.junit and args.junit.exists() else None
    cases, started, seconds = read_junit(junit) if junit else ([], "", 0.0)
    run = Run(read_figures(args.figures), cases, describe_machine(), args.command, started, seconds)
    if args.output:
        write_atomically(args.output, render(run))
    else:
        sys.stdout.write(render(run))
    return 0


if __name__ == "__main__":
    sys.exit(main())
