"""`carebench capacity`: bad input exits 2 with one error line; a tiny real search end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.test_tune import PNG_SIGNATURE, clean_environment, run_cli

__all__ = ["clean_environment"]

#: In-process, fixed 5 ms queries, a semaphore of 4 (at most 800 successes/s), 0.3 s runs; a
#: run holds 30-250 requests, so the budget for failures is 5 % rather than a noisy 1 %.
TINY = [
    "capacity", "--pattern", "semaphore", "--limit", "4", "--slo", "p99<100ms", "--errors", "5%",
    "--start-rate", "100", "--max-rate", "3200", "--precision", "25%", "--trials", "2",
    "--duration", "0.3", "--warmup", "0.2", "--mode", "inprocess", "--db-profile", "ideal",
    "--min-latency", "5ms", "--max-latency", "5ms", "--error-rate", "0", "--seed", "1",
]  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--slo", "p99>250ms"], "--slo: expected PERCENTILE<DURATION such as p99<250ms"),
        (["--slo", "p98<250ms"], "--slo: unknown percentile 'p98' (did you mean"),
        (["--slo", "p99<soon"], "--slo: invalid duration 'soon'"),
        (["--errors", "150%"], "--errors: a percentage must be between 0 and 100"),
        (["--precision", "0"], "--precision (0%) must be > 0%"),
        (["--start-rate", "500", "--max-rate", "100"], "--max-rate (100) must be >= --start"),
        (["--pattern", "semaphor"], "did you mean 'semaphore'?"),
        (["--trials", "0"], "--trials (0)"),
    ],
)
def test_bad_input_exits_2_with_one_error_line(argv, message, capsys) -> None:
    """Each mistake is named on stderr as `error: ...`, exit status 2, nothing run."""
    code, out, err = run_cli(["capacity", *argv], capsys)

    assert code == 2
    assert err.startswith("error: ")
    assert message in err
    assert "Traceback" not in err
    assert out == ""


def test_tiny_search_brackets_the_semaphores_ceiling(tmp_path: Path, capsys) -> None:
    """4 permits on 5 ms queries serve at most 800/s: above ~842/s more than 5 % must be
    refused, while 100/s (one query in flight on average) passes; the capacity lies between,
    found by doubling from 100/s and then bisecting."""
    saved, plot, page = tmp_path / "cap.json", tmp_path / "cap.png", tmp_path / "cap.html"
    argv = [*TINY, "--output", str(saved), "--png", str(plot), "--html", str(page)]

    code, out, err = run_cli(argv, capsys)

    assert code == 0, err
    document = json.loads(saved.read_text())
    (result,) = document["patterns"]
    assert result["status"] == "found"
    assert 100 <= result["capacity_per_second"] <= 842
    rates = [probe["rate"] for probe in result["probes"]]
    assert rates[:2] == [100, 200]
    assert any(p["phase"] == "bisection" for p in result["probes"])
    assert len(rates) <= document["max_probes"]
    failed = [p for p in result["probes"] if not p["passed"]]
    assert failed and all(p["rate"] > result["capacity_per_second"] for p in failed)
    assert "semaphore" in out and "Capacity within p99<100ms" in out
    assert plot.read_bytes().startswith(PNG_SIGNATURE)
    assert "<img" in page.read_text()
