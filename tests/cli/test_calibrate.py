"""`carebench calibrate`: bad input exits 2 with one error line; --json, --output and --png."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from carebench.cli import main

#: A calibration that takes well under a second: fixed 2 ms queries, levels 1, 2, 4.
FAST = [
    "calibrate", "--backend", "simulator", "--min-latency", "2ms", "--max-latency", "2ms",
    "--error-rate", "0", "--max-concurrency", "4", "--level-duration", "0.1s",
    "--warmup", "0", "--seed", "1",
]  # fmt: skip
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


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
        (["--max-concurrency", "0"], "--max-concurrency (0) must be >= 3"),
        (["--level-duration", "0"], "--level-duration (0) must be > 0"),
        (["--level-duration", "soon"], "invalid duration 'soon'"),
        (["--backend", "simulatr"], "did you mean 'simulator'?"),
        (["--db-pool-size", "2"], "--db-pool-size (2) caps the levels at 2"),
        (["--min-latency", "120", "--max-latency", "100"], "--min-latency (120) must be <="),
    ],
)
def test_bad_input_exits_2_with_one_error_line(argv, message, capsys) -> None:
    """Each mistake is named on stderr as `error: ...`, exit status 2, nothing measured."""
    code, out, err = run_cli(["calibrate", *argv], capsys)

    assert code == 2
    assert err.startswith("error: ")
    assert message in err
    assert "Traceback" not in err
    assert out == ""


def test_json_prints_a_document_with_the_fit(capsys) -> None:
    """--json: stdout is one JSON document with the levels, the fit and the serve flags."""
    code, out, err = run_cli([*FAST, "--json"], capsys)

    assert code == 0
    document = json.loads(out)
    assert document["backend"] == "simulator"
    assert [level["concurrency"] for level in document["levels"]] == [1, 2, 4]
    assert {"sigma", "kappa", "single_query_ms", "r_squared"} <= set(document["fit"])
    assert "--db-coherency" in document["simulator_flags"]
    assert err == ""


def test_text_output_shows_levels_fit_and_serve_command_and_files(tmp_path: Path, capsys):
    """Without --json: the table, the fit, the serve command; --output and --png written."""
    saved, plot = tmp_path / "calibration.json", tmp_path / "calibration.png"

    code, out, err = run_cli([*FAST, "--output", str(saved), "--png", str(plot)], capsys)

    assert code == 0
    assert "Calibration of simulator" in out
    assert "contention sigma =" in out
    assert "carebench serve --db-profile realistic --min-latency" in out
    assert "N = 4:" in err
    assert json.loads(saved.read_text())["fit"] is not None
    assert plot.read_bytes().startswith(PNG_SIGNATURE)


def test_no_successful_query_means_no_fit_and_exit_1(capsys) -> None:
    """Every query failing leaves nothing to fit: the levels are still shown, a note says why,
    no serve flags are suggested, and the exit status is 1."""
    code, out, _ = run_cli([*FAST, "--error-rate", "1"], capsys)

    assert code == 1
    assert "note: no fit:" in out
    assert "carebench serve" not in out
    assert "Calibration of simulator" in out
