"""A whole calibration: the document it produces, the serve flags it derives, and the key
property: calibrating a simulator recovers that simulator's own coefficients."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from carebench.backends.base import backend_class
from carebench.backends.config import BackendConfig
from carebench.backends.simulator import SimulatorConfig
from carebench.calibrate.calibration import (
    CalibrationDocument,
    calibrate,
    latency_range,
    simulator_flags,
)
from carebench.calibrate.config import CalibrationConfig
from carebench.calibrate.measure import LevelResult
from carebench.calibrate.usl import UslFit
from carebench.cli import build_parser
from carebench.cli.options import from_args
from carebench.errors import ConfigError

FAST = CalibrationConfig(max_concurrency=4, level_duration=0.1, warmup=0.0, patients=300)
FIXED_2MS = SimulatorConfig(min_latency=0.002, max_latency=0.002, error_rate=0.0, seed=1)


def single_level(p10_ms: float, p90_ms: float) -> LevelResult:
    return {
        "concurrency": 1, "completed": 100, "errors": 0, "not_found": 0, "duration_s": 1.0,
        "throughput": 100.0, "mean_ms": 10.0, "p10_ms": p10_ms, "p50_ms": 10.0,
        "p90_ms": p90_ms, "p99_ms": p90_ms, "fitted": True,
    }  # fmt: skip


def fit_of(l1: float, sigma: float, kappa: float) -> UslFit:
    return UslFit(l1, sigma, kappa, (), 1.0, 0.0, (1, 2, 4))


def test_the_serve_flags_mean_the_fit_when_serve_parses_them() -> None:
    """`carebench serve <flags>` builds a realistic simulator with the fitted coefficients,
    the pool, no injected errors, and a latency range centred on the fitted L1."""
    fit = fit_of(0.0123, 0.0417, 0.000823)
    flags = simulator_flags(fit, single_level(9.0, 15.0), pool_size=100, error_rate=0.0)

    args = build_parser().parse_args(["serve", *flags])
    served = from_args(SimulatorConfig, args)

    assert served.profile == "realistic"
    assert served.contention == pytest.approx(0.0417, rel=1e-3)
    assert served.coherency == pytest.approx(0.000823, rel=1e-3)
    assert served.pool_size == 100
    assert served.error_rate == 0
    assert served.min_latency is not None and served.max_latency is not None
    assert (served.min_latency + served.max_latency) / 2 == pytest.approx(0.0123, rel=1e-3)
    assert flags[:2] == ["--db-profile", "realistic"]


def test_latency_range_is_a_uniform_with_the_measured_p10_to_p90_width() -> None:
    """A uniform [a, b] has p90 - p10 = 0.8 (b - a): the range is centred on L1 with that
    width, and never goes below zero."""
    low, high = latency_range(fit_of(0.010, 0.0, 0.0), single_level(9.0, 11.0))

    assert (low, high) == pytest.approx((0.00875, 0.01125))
    assert latency_range(fit_of(0.001, 0.0, 0.0), single_level(0.5, 5.0))[0] == 0


async def test_a_calibration_document_has_every_level_the_fit_and_the_flags() -> None:
    """Fast run on a fixed-latency simulator: typed document, every level fitted, flags set."""
    document = await calibrate(BackendConfig(), FIXED_2MS, FAST)

    checked = msgspec.convert(document, CalibrationDocument)
    assert [level["concurrency"] for level in checked["levels"]] == [1, 2, 4]
    assert all(level["fitted"] and level["errors"] == 0 for level in checked["levels"])
    fit = checked["fit"]
    assert fit is not None and fit["levels"] == [1, 2, 4]
    assert fit["single_query_ms"] == pytest.approx(2.0, rel=0.5)
    assert "--db-contention" in checked["simulator_flags"]
    assert checked["pool_size"] == 100
    assert not any("pool size" in note for note in checked["notes"])


async def test_levels_stop_at_the_pool_and_say_why() -> None:
    """A pool smaller than --max-concurrency caps the levels, and a note says so."""
    database = SimulatorConfig(
        min_latency=0.002, max_latency=0.002, error_rate=0.0, pool_size=3, seed=1
    )

    document = await calibrate(BackendConfig(), database, FAST)

    assert [level["concurrency"] for level in document["levels"]] == [1, 2, 3]
    assert any("pool size (3" in note for note in document["notes"])


async def test_a_pool_too_small_for_three_levels_is_a_config_error() -> None:
    """With two connections there are only two levels: the error names --db-pool-size."""
    with pytest.raises(ConfigError, match=r"--db-pool-size \(2\)"):
        await calibrate(BackendConfig(), SimulatorConfig(pool_size=2), FAST)


async def test_sqlite_calibrates_and_missing_ids_are_reported(tmp_path: Path) -> None:
    """A real database goes through create_backend + start like any other; ids beyond what
    was seeded count as not found, with a note saying how to seed enough."""
    backend = BackendConfig("sqlite", db_path=str(tmp_path / "calibrate.sqlite3"))
    await backend_class("sqlite").seed(backend, 100)
    config = CalibrationConfig(max_concurrency=4, level_duration=0.1, warmup=0.0, patients=200)

    document = await calibrate(backend, SimulatorConfig(pool_size=4, seed=1), config)

    levels = document["levels"]
    assert all(level["completed"] > 0 for level in levels)
    assert all(0 < level["not_found"] == level["errors"] for level in levels)
    assert any("--patients 200" in note for note in document["notes"])
    assert "--error-rate" in document["simulator_flags"]
    assert document["simulator_flags"][document["simulator_flags"].index("--error-rate") + 1] == "0"


@pytest.mark.slow
async def test_calibrating_the_simulator_recovers_its_own_coefficients() -> None:
    """The issue's test: a simulator with known sigma and kappa (fixed 50 ms, no errors, a pool
    above every level) calibrated through the real driver gives them back within 10 %.

    Real time, about 10 s: seven levels of 1 s. 50 ms keeps asyncio's sleep overshoot (well
    under 1 ms, added to every query) to ~1 % of L1, and so of sigma and kappa.
    """
    database = SimulatorConfig(
        min_latency=0.05, max_latency=0.05, error_rate=0.0, profile="realistic",
        contention=0.05, coherency=0.002, pool_size=256, seed=1,
    )  # fmt: skip
    config = CalibrationConfig(max_concurrency=64, level_duration=1.0, warmup=0.2)

    document = await calibrate(BackendConfig(), database, config)

    fit = document["fit"]
    assert fit is not None
    assert fit["levels"] == [1, 2, 4, 8, 16, 32, 64]
    assert fit["sigma"] == pytest.approx(0.05, rel=0.10)
    assert fit["kappa"] == pytest.approx(0.002, rel=0.10)
    assert fit["single_query_ms"] == pytest.approx(50, rel=0.05)
    assert fit["clamped"] == []
    assert fit["peak_concurrency"] == pytest.approx(database.peak_concurrency(), rel=0.10)
