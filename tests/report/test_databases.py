"""BENCHMARKS.md's real-database sections: calibrations and the model against reality."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from carebench.report.databases import calibration_section, model_versus_reality
from tests.report.conftest import make_result


def calibration(name: str, sigma: float, kappa: float) -> dict[str, Any]:
    """A calibrate --output document with a fit and the suggested simulator flags."""
    return {
        "carebench_version": "0.0.0",
        "backend": name,
        "pool_size": 100,
        "settings": {"max_concurrency": 128, "level_duration_s": 2, "warmup_s": 0.5,
                     "patients": 10000},
        "levels": [],
        "fit": {"single_query_ms": 0.147, "sigma": sigma, "kappa": kappa, "clamped": [],
                "peak_concurrency": 8.3, "peak_throughput": 16000.0, "r_squared": 0.99,
                "throughput_error": 0.098, "levels": [1, 2, 4, 8]},
        "simulator_flags": ["--db-contention", str(sigma), "--db-coherency", str(kappa)],
        "notes": ["a note from the fit"],
        "elapsed_s": 12.0,
    }  # fmt: skip


def test_calibration_table_shows_each_fitted_database(tmp_path: Path) -> None:
    """One row per calibrated database with its coefficients, then its simulator flags."""
    (tmp_path / "calibrate-postgres.json").write_text(
        json.dumps(calibration("postgres", 0.39, 0.0087))
    )

    text = calibration_section(tmp_path, tmp_path)

    row = next(line for line in text.splitlines() if line.startswith("| postgres |"))
    assert "| 0.3900 | 0.008700 | 8.3 | 16000 | 0.990 | 9.8% | 1,2,4,8 |" in row
    assert "`--db-contention 0.39 --db-coherency 0.0087`" in text
    assert "a note from the fit" in text
    assert "| sqlite |" not in text


def test_no_calibration_files_no_section(tmp_path: Path) -> None:
    """Without calibrate-*.json files the section is left out entirely."""
    assert calibration_section(tmp_path, tmp_path) == ""


def test_model_versus_reality_states_ratios_per_pattern(tmp_path: Path) -> None:
    """Each pattern's model/real goodput and p99 ratios, and their medians in the summary."""
    real = [
        make_result("naive", rps=100.0, p99=10.0),
        make_result("workerpool", rps=200.0, p99=20.0),
    ]
    model = [
        make_result("naive", rps=50.0, p99=30.0),
        make_result("workerpool", rps=200.0, p99=10.0),
    ]
    (tmp_path / "loadtest-postgres-c100.json").write_text(json.dumps(real))
    (tmp_path / "loadtest-calibrated-c100.json").write_text(json.dumps(model))

    section, summary = model_versus_reality(tmp_path)

    assert "| naive | 100.0 | 50.0 | 0.50 |" in section
    assert "| workerpool | 200.0 | 200.0 | 1.00 |" in section
    assert summary == [
        "calibrated simulator against PostgreSQL at 100 clients: median model/real ratio 0.75 "
        "for goodput, 1.75 for the p99 of successes (1.00 = the model predicts reality)"
    ]


def test_model_versus_reality_needs_both_runs(tmp_path: Path) -> None:
    """Only the real run present: no section and nothing for the analysis."""
    (tmp_path / "loadtest-postgres-c100.json").write_text(json.dumps([make_result()]))

    assert model_versus_reality(tmp_path) == ("", [])
