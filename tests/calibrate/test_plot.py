"""The calibration plot: a PNG with or without a fit."""

from __future__ import annotations

from carebench.calibrate.calibration import CalibrationDocument
from carebench.calibrate.measure import LevelResult
from carebench.calibrate.plot import calibration_png
from carebench.calibrate.usl import UslPoint, fit_usl

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def document(with_fit: bool) -> CalibrationDocument:
    levels: list[LevelResult] = []
    for n in (1, 2, 4, 8, 16, 32, 64):
        latency_ms = 10 * (1 + 0.03 * (n - 1) + 0.001 * n * (n - 1))
        levels.append({
            "concurrency": n, "completed": 100, "errors": 0, "not_found": 0,
            "duration_s": 1.0, "throughput": n / latency_ms * 1000, "mean_ms": latency_ms,
            "p10_ms": latency_ms, "p50_ms": latency_ms, "p90_ms": latency_ms,
            "p99_ms": latency_ms, "fitted": n < 64,
        })  # fmt: skip
    points = [
        UslPoint(level["concurrency"], (level["mean_ms"] or 0) / 1000, level["throughput"])
        for level in levels
        if level["fitted"]
    ]
    return {
        "carebench_version": "0", "backend": "sqlite", "pool_size": 100,
        "settings": {"max_concurrency": 64, "level_duration_s": 1.0, "warmup_s": 0.5,
                     "patients": 10_000},
        "levels": levels,
        "fit": fit_usl(points).as_document() if with_fit else None,
        "simulator_flags": [], "notes": [], "elapsed_s": 1.0,
    }  # fmt: skip


def test_plot_is_a_png_with_a_fit() -> None:
    """Measured points, fitted curves and the peak render to PNG bytes."""
    png = calibration_png(document(with_fit=True))

    assert png.startswith(PNG_SIGNATURE)
    assert len(png) > 10_000


def test_plot_without_a_fit_still_shows_the_measurements() -> None:
    """A calibration whose fit failed still plots its levels."""
    assert calibration_png(document(with_fit=False)).startswith(PNG_SIGNATURE)
