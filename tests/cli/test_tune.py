"""`carebench tune`: bad input exits 2 with one error line; a tiny real search end to end."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from carebench.cli import main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: A search of a few seconds: in-process, fixed 5 ms queries, 0.3 s runs, 3 candidates x 2;
#: clients wait for a permit (--max-wait) rather than re-sending refusals in a storm.
TINY = [
    "tune", "--pattern", "semaphore", "--param", "limit=2..8", "--points", "2",
    "--refine", "1", "--trials", "2", "--duration", "0.3", "--warmup", "0",
    "--mode", "inprocess", "--concurrency", "10", "--max-wait", "1s", "--db-profile", "ideal",
    "--min-latency", "5ms", "--max-latency", "5ms", "--error-rate", "0", "--seed", "1",
]  # fmt: skip


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No CAREBENCH_* variable of the outer environment leaks into a test."""
    for name in list(os.environ):
        if name.startswith("CAREBENCH_"):
            monkeypatch.delenv(name)


def run_cli(argv: Sequence[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code: Any = main(list(argv))
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--param", "limit=5..100"], "--pattern: name the pattern to tune"),
        (["--pattern", "semaphore"], "--param: name the setting to search"),
        (["--pattern", "semaphore", "--param", "limt=5..9"], "did you mean 'limit'?"),
        (["--pattern", "semaphore", "--param", "limit=9..5"], "must go up"),
        (["--pattern", "semaphor", "--param", "limit=5..9"], "did you mean 'semaphore'?"),
        (["--pattern", "semaphore", "--param", "limit=5..9", "--limit", "30"], "--limit: tune"),
        (["--pattern", "semaphore", "--param", "limit=5..9", "--p99", "fast"], "--p99: invalid"),
        (["--pattern", "semaphore", "--param", "limit=5..9", "--trials", "0"], "--trials (0)"),
    ],
)
def test_bad_input_exits_2_with_one_error_line(argv, message, capsys) -> None:
    """Each mistake is named on stderr as `error: ...`, exit status 2, nothing run."""
    code, out, err = run_cli(["tune", *argv], capsys)

    assert code == 2
    assert err.startswith("error: ")
    assert message in err
    assert "Traceback" not in err
    assert out == ""


def test_tiny_search_finds_the_largest_limit_and_writes_its_files(tmp_path: Path, capsys) -> None:
    """With 10 clients on 5 ms queries every limit meets 250 ms and more permits serve more:
    the grid (2, 8) and one midpoint (4) are run twice each, and 8 is the best."""
    saved, plot, page = tmp_path / "tune.json", tmp_path / "tune.png", tmp_path / "tune.html"
    argv = [*TINY, "--json", "--output", str(saved), "--png", str(plot), "--html", str(page)]

    code, out, err = run_cli(argv, capsys)

    assert code == 0, err
    document = json.loads(out)
    assert json.loads(saved.read_text()) == document
    assert [c["value"] for c in document["candidates"]] == [2, 4, 8]
    goodput = [c["goodput"]["median"] for c in document["candidates"]]
    assert goodput == sorted(goodput) and goodput[0] > 0
    assert document["best_flags"] == ["--limit", "8"]
    assert document["runs"] == 6 <= document["max_runs"] == 8
    assert all(len(c["trials"]) == 2 for c in document["candidates"])
    assert "at most 4 candidates x 2 trials = 8 runs" in err
    assert plot.read_bytes().startswith(PNG_SIGNATURE)
    assert "<img" in page.read_text() and "--limit" in page.read_text()
