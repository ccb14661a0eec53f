"""RELIABILITY.md from a reliability run: the figures lines and pytest's JUnit XML."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from carebench.loadgen.machine import MachineDescription
from carebench.report.reliability import Run, main, read_figures, read_junit, render

MACHINE: MachineDescription = {
    "cpu_model": "Test CPU 9000",
    "cores": 2,
    "memory_bytes": 8 * 2**30,
    "os": "Linux-6.1-x86_64",
    "python": "3.11.7",
    "packages": {"uvicorn": "0.54.0"},
    "date": "2026-11-28T10:00:00+00:00",
}
FIGURES = [
    {
        "part": "shutdown",
        "test": "tests/reliability/test_shutdown.py::test_drain[uvicorn-naive]",
        "outcome": "passed",
        "figures": {"server": "uvicorn", "requests_sent": 24, "lost_accepted_requests": 0,
                    "tracebacks": 0, "exit_s": 0.61, "signals": 1},
    },
    {
        "part": "shutdown",
        "test": "tests/reliability/test_shutdown.py::test_drain[granian-naive]",
        "outcome": "passed",
        "figures": {"server": "granian", "requests_sent": 30, "lost_accepted_requests": 0,
                    "tracebacks": 0, "exit_s": 1.2, "signals": 1},
    },
    {
        "part": "shutdown",
        "test": "tests/reliability/test_shutdown.py::test_cut",
        "outcome": "failed",
        "figures": {"lost_accepted_requests": 12, "final_stats_printed": False, "signals": 2},
    },
    {
        "part": "hostile-http",
        "test": "tests/reliability/test_hostile_http.py::test_attack[slowloris]",
        "outcome": "passed",
        "figures": {"kind": "slowloris", "attempts": 2},
    },
    {
        "part": "hostile-http",
        "test": "tests/reliability/test_hostile_http.py::test_attack[half-close]",
        "outcome": "passed",
        "figures": {"kind": "half-close", "attempts": 3},
    },
    {
        "part": "overload",
        "test": "tests/reliability/test_overload.py::test_goodput[workerpool]",
        "outcome": "passed",
        "figures": {"requests": 5000, "server_5xx": 0, "goodput_ratio": 0.97},
    },
]  # fmt: skip


def statistics(nodeid: str, passing: int, invalid: int) -> str:
    text = (
        f"{nodeid}:\n\n  - during generate phase (0.50 seconds):\n"
        f"    - {passing} passing, 0 failing, and {invalid} invalid test cases\n\n"
        "  - Stopped because settings.max_examples=200"
    )
    return base64.b64encode(text.encode()).decode()


def junit_xml() -> str:
    cases = [
        ("tests.reliability.test_shutdown", "test_drain[uvicorn-naive]", ""),
        ("tests.reliability.test_shutdown", "test_drain[granian-naive]", ""),
        ("tests.reliability.test_shutdown", "test_cut", "<failure message='boom'/>"),
        ("tests.reliability.test_overload", "test_goodput[workerpool]", ""),
        ("tests.reliability.test_contract", "test_fuzz", ""),
        ("tests.property.test_ids", "test_roundtrip", ""),
        ("tests.property.test_queue.QueueMachine", "runTest", ""),
    ]
    properties = "".join(
        f'<property name="hypothesis-statistics-{nodeid}" value="{statistics(nodeid, n, 7)}"/>'
        for nodeid, n in (
            ("tests/property/test_ids.py::test_roundtrip", 200),
            ("tests/property/test_queue.py::QueueMachine::runTest", 100),
        )
    )
    body = "".join(
        f'<testcase classname="{classname}" name="{name}" time="1.5">{inner}</testcase>'
        for classname, name, inner in cases
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" '
        'timestamp="2026-11-28T09:00:00+00:00" time="912.3">'
        f"<properties>{properties}</properties>{body}</testsuite></testsuites>"
    )


@pytest.fixture
def document(tmp_path: Path) -> str:
    figures = tmp_path / "figures.jsonl"
    figures.write_text("".join(json.dumps(line) + "\n" for line in FIGURES), encoding="utf-8")
    junit = tmp_path / "junit.xml"
    junit.write_text(junit_xml(), encoding="utf-8")
    cases, started, seconds = read_junit(junit)
    run = Run(read_figures(figures), cases, MACHINE, ["make reliability"], started, seconds)
    return render(run)


def test_header_names_the_machine_the_date_and_the_commands(document: str) -> None:
    """The run's start and length, the machine, and the exact commands come first."""
    assert "| started | 2026-11-28T09:00:00+00:00 |" in document
    assert "| duration | 912 s |" in document
    assert "| CPU | Test CPU 9000, 2 cores |" in document
    assert "| Python | 3.11.7 |" in document
    assert "```\nmake reliability\n```" in document


def test_summary_counts_outcomes_and_what_was_tried_per_part(document: str) -> None:
    """One summary row per part: tests, passed, failed, skipped and the summed tried counts."""
    assert (
        "| [Shutdown under load](#shutdown-under-load) | 3 | 2 | 1 | 0 "
        "| 54 requests sent, 4 signals |"
    ) in document
    assert "| [Overload](#overload) | 1 | 1 | 0 | 0 | 5,000 requests |" in document
    assert "| [Contract fuzzing](#contract-fuzzing) | 1 | 1 | 0 | 0 |  |" in document
    assert "| [Property tests](#property-tests) | 2 | 2 | 0 | 0 | 300 examples |" in document


def test_runs_of_a_test_share_a_table_with_what_varies(document: str) -> None:
    """Parametrised runs are rows; figures alike in every run and measured zeros are stated
    below the table instead of repeated in it."""
    assert (
        "| run | outcome | server | requests_sent | exit_s |\n| --- | --- | --- | ---: | ---: |"
        in (document)
    )
    assert "| uvicorn-naive | passed | uvicorn | 24 | 0.61 |" in document
    assert "| granian-naive | passed | granian | 30 | 1.2 |" in document
    assert "In every run: signals = 1." in document
    assert "Measured zeros (all 2 runs): lost_accepted_requests = 0, tracebacks = 0." in document


def test_a_figure_that_only_repeats_the_run_id_is_left_out(document: str) -> None:
    """`kind` of `test_attack[slowloris]` is the run's id already: no column for it."""
    assert "| run | outcome | attempts |" in document
    assert "| slowloris | passed | 2 |" in document


def test_a_single_run_is_a_figure_value_table_and_its_failure_is_shown(document: str) -> None:
    """An unparametrised test gets a figure/value table; a non-zero loss is not a zero."""
    section = document.split("### `test_cut`", 1)[1].split("##", 1)[0]
    assert "| lost_accepted_requests | 12 |" in section
    assert "| final_stats_printed | no |" in section
    assert "Measured zeros" not in section
    assert "| `test_cut` | failed | 1.5 |" in document
    assert "What held: 1 failed, 2 passed." in document


def test_parts_without_figures_or_tests_say_so(document: str) -> None:
    """A part whose tests recorded nothing says so; a part absent from the run says so."""
    contract = document.split("## Contract fuzzing", 1)[1].split("\n## ", 1)[0]
    assert "| `test_fuzz` | passed | 1.5 |" in contract
    assert "No figures were recorded for this part." in contract
    soak = document.split("## Soak", 1)[1].split("\n## ", 1)[0]
    assert "Not run: no test of this part is in this run." in soak


def test_property_tests_are_reported_by_outcome_and_examples(document: str) -> None:
    """Property tests: a row per file with tests and Hypothesis examples, then the total."""
    assert "| `test_ids.py` | 1 | 1 | 0 | 200 | 7 |" in document
    assert "| `test_queue.py` | 1 | 1 | 0 | 100 | 7 |" in document
    assert "| all | 2 | 2 | 0 | 300 | 14 |" in document
    assert "Measured zeros: failed tests = 0, failing examples = 0." in document


def test_command_line_writes_the_document(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The script reads both files and prints the markdown."""
    figures = tmp_path / "figures.jsonl"
    figures.write_text(json.dumps(FIGURES[0]) + "\n", encoding="utf-8")
    junit = tmp_path / "junit.xml"
    junit.write_text(junit_xml(), encoding="utf-8")
    assert main(["--figures", str(figures), "--junit", str(junit), "--command", "x y"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# carebench reliability\n")
    assert "```\nx y\n```" in out


def test_output_file_is_written_whole(tmp_path: Path) -> None:
    """--output writes the document to a file (whole or not at all), printing nothing."""
    figures = tmp_path / "figures.jsonl"
    figures.write_text(json.dumps(FIGURES[-1]) + "\n", encoding="utf-8")
    out = tmp_path / "RELIABILITY.md"
    assert main(["--figures", str(figures), "--output", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    assert "| `test_goodput[workerpool]` | passed |  |" in text
    assert "Not run: no property test is in this run." in text
