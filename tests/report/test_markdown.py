"""BENCHMARKS.md is rendered from collected run files, with analysis read off the data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from carebench.cli import main
from carebench.loadgen.results import LoadTestResult, RunConfigReport
from carebench.report.markdown import render_markdown
from tests.report.conftest import SWEEP_CURVES, make_result, make_sweep

CONFIG: RunConfigReport = {
    **make_result()["config"],
    "requests": None,
    "concurrency": 500,
    "duration": 10.0,
    "warmup": 2.0,
    "server_args": ["--workers", "20", "--db-profile", "realistic", "--seed", "1"],
}


def collected(tmp_path: Path) -> Path:
    """A results directory like benchmarks/collect.sh writes."""
    directory = tmp_path / "results"
    directory.mkdir()
    results: list[LoadTestResult] = [
        make_result("naive", rps=90.0, p99=4000.0, config=CONFIG),
        make_result(
            "workerpool",
            rps=130.0,
            p99=800.0,
            config=CONFIG,
            outcomes={"success": 150, "rejected": 50},
        ),
    ]
    (directory / "loadtest-realistic-c500.json").write_text(json.dumps(results))
    (directory / "sweep.json").write_text(json.dumps(make_sweep(SWEEP_CURVES)))
    (directory / "overhead.txt").write_text(
        "hello 28000\ncarebench 14000\nmedian req/s: hello-world 28000, carebench workerpool "
        "14000, ratio 0.50\n"
    )
    (directory / "client_vs_wrk.txt").write_text(
        "our client: median 80,000 req/s\n"
        "per round (side by side, so drift in the machine's speed cancels), client / wrk per "
        "core: 0.58 0.62 0.61; median 0.61\n"
        "     ratio: our client / wrk = 0.55 raw req/s, 0.60 per core of CPU used "
        "(some runs target-bound)\n"
    )
    (directory / "processes.txt").write_text(
        "median processes 2:    30,000 req/s\n"
        "ratio 2/1 processes, req/s: 1.20x (rounds 1.10, 1.20, 1.30)\n"
    )
    (directory / "generators.txt").write_text(
        "ratio: 2 gens, CPU 1 / 1 gen = 0.95 raw req/s, 0.97 per core of client CPU\n"
        "ratio: 2 gens, CPU 0+1 / 1 gen = 1.30 raw req/s, 0.96 per core of client CPU\n"
    )
    (directory / "safeguards_cost.txt").write_text(
        "database  endpoint        mode              req/s\n"
        "ideal     legacy          plain             20000\n"
        "all safeguards / plain at zero database latency: legacy 0.80x req/s, 1.20x p50\n"
    )
    (directory / "scenario_matrix.txt").write_text(
        "- machine: Test CPU\n\n### realistic database\n\n| pattern | closed, 100 clients |\n"
        "| --- | ---: |\n| adaptive | 0.88 / 4.10 |\n"
    )
    (directory / "bench.txt").write_text(
        "==== tables ====\n===== carebench: extra_info per benchmark =====\n\n"
        "zero latency: the pattern's own cost per request\nzero-c100 workerpool   19.4\n\n"
        "optimized is NOT faster than workerpool: time per request 1.112\n"
        "============ 43 passed in 57.14s ============\n"
    )
    return directory


def test_document_has_every_section_and_the_verdicts(tmp_path: Path) -> None:
    """Machine, analysis, load-test table with its command, sweep, overhead and benchmarks."""
    docs = tmp_path / "docs"
    docs.mkdir()
    text = render_markdown(collected(tmp_path), docs)
    assert "## Machine" in text and "Test CPU 3000" in text
    assert "load generator: callback_loop python (not built), protocol compiled" in text
    assert "**realistic database, 500 clients**: workerpool wins" in text
    assert "Lowest goodput: naive" in text
    assert "Rejecting: workerpool 25 %" in text
    assert (
        "`carebench loadtest --concurrency 500 --duration 10 --warmup 2 --db-profile "
        "realistic --seed 1`" in text
    )
    assert "| pattern | goodput/s | p99 ok ms | attempts/s |" in text
    assert "| workerpool | 97.5 | 800.0 | 130.0 |" in text
    assert "## Sweep over concurrency" in text
    assert "ratio 0.50" in text
    assert "## Server processes" in text and "`--processes 2`" in text
    assert "- processes: ratio 2/1 processes, req/s: 1.20x (rounds 1.10, 1.20, 1.30)" in text
    assert "## Load generator processes" in text and "`--generators 2`" in text
    assert (
        "- generators: ratio: 2 gens, CPU 0+1 / 1 gen = 1.30 raw req/s, 0.96 per core of "
        "client CPU" in text
    )
    assert (
        "- client vs wrk: ratio: our client / wrk = 0.55 raw req/s, 0.60 per core of CPU used "
        "(some runs target-bound)" in text
    )
    assert "client / wrk per core: 0.58 0.62 0.61; median 0.61" in text
    assert "against the same nginx" in text
    assert "## Cost of the safeguards\n\n`benchmarks/safeguards_cost.py`" in text
    assert "ideal     legacy          plain             20000" in text
    assert (
        "- safeguards cost: all safeguards / plain at zero database latency: legacy 0.80x "
        "req/s, 1.20x p50" in text
    )
    assert "## Scenario matrix\n\n`benchmarks/scenario_matrix.py`" in text
    assert "\n| adaptive | 0.88 / 4.10 |\n" in text
    assert "```\n- machine: Test CPU" not in text
    assert "zero-c100 workerpool   19.4" in text
    assert "43 passed" not in text
    assert "- microbenchmarks: optimized is NOT faster than workerpool" in text
    assert (docs / "spectrum-realistic-database-500-clients.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_refuses_a_directory_without_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`carebench report DIR --markdown` on an empty directory is an error, exit 2."""
    code = main(["report", str(tmp_path), "--markdown", str(tmp_path / "B.md")])
    assert code == 2
    assert "not a results directory" in capsys.readouterr().err
    assert not (tmp_path / "B.md").exists()


def test_real_databases_follow_the_simulator_profiles(tmp_path: Path) -> None:
    """Scenario sections run realistic, ideal, postgres, sqlite, calibrated, whatever the
    file names' alphabetical order, and the calibrated one says what it is."""
    directory = tmp_path / "results"
    directory.mkdir()
    for name in ("sqlite-c100", "calibrated-c100", "postgres-c100", "ideal-c100", "realistic-c500"):
        (directory / f"loadtest-{name}.json").write_text(json.dumps([make_result(config=CONFIG)]))

    (tmp_path / "docs").mkdir()
    text = render_markdown(directory, tmp_path / "docs")

    headings = [line for line in text.splitlines() if line.startswith("## Load test: ")]
    assert headings == [
        "## Load test: realistic database, 500 clients",
        "## Load test: ideal database, 100 clients",
        "## Load test: postgres database, 100 clients",
        "## Load test: sqlite database, 100 clients",
        "## Load test: simulator calibrated to PostgreSQL, 100 clients",
    ]


REFERENCE_RUN = (
    "# machine: Test CPU 3000, 2 cores, 2026-11-28\n"
    "reference 28000.00 cpu 1.00 per-core 28000 wrk-cpu 0.30 cpu0-others 0.00 cpu1-others 0.01 "
    "errors 0 body 500\n"
    "carebench 21000.00 cpu 1.00 per-core 21000 wrk-cpu 0.25 cpu0-others 0.00 cpu1-others 0.02 "
    "errors 0 body 468\n"
    "median req/s: reference 28000, carebench 21000, ratio 0.75 (server CPU 1.00 vs 1.00 "
    "cores; per core-second 28000 vs 21000, ratio 0.75)\n"
)


def test_reference_run_has_its_section_and_analysis_line(tmp_path: Path) -> None:
    """reference.txt renders as its own section (what was run, then the runs) and its median
    line joins the analysis."""
    directory = collected(tmp_path)
    (directory / "reference.txt").write_text(REFERENCE_RUN)

    text = render_markdown(directory, tmp_path)

    assert "## Versus the Go reference server" in text
    assert "GOMAXPROCS=1" in text and "wrk -t1 -c64 -d10s" in text
    assert "carebench 21000.00 cpu 1.00 per-core 21000" in text
    assert "- reference: median req/s: reference 28000, carebench 21000, ratio 0.75" in text


def test_skipped_reference_run_says_so_without_a_number(tmp_path: Path) -> None:
    """A run that skipped the reference (no Go, no sources) shows the reason, no figures."""
    directory = collected(tmp_path)
    reason = "Go is not installed (apt-get install golang-go)"
    (directory / "reference.txt").write_text(f"skipped: {reason}\n")

    text = render_markdown(directory, tmp_path)

    section = text.split("## Versus the Go reference server", 1)[1].split("\n## ", 1)[0]
    assert f"skipped ({reason})" in section
    assert "req/s" not in section and "```" not in section
    assert f"- reference: skipped: {reason}" in text
