"""A whole calibration: start the backend, measure each level, fit the USL, and translate the
fit into the `carebench serve` flags of a simulator that behaves like the backend."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, TypedDict

from carebench import __version__
from carebench.backends.config import BackendConfig, create_backend
from carebench.backends.simulator import SimulatorConfig
from carebench.calibrate.config import CalibrationConfig
from carebench.calibrate.measure import (
    FALL_FRACTION,
    FALL_LEVELS,
    LevelResult,
    LevelWindow,
    PatientIds,
    measure_levels,
)
from carebench.calibrate.usl import MIN_LEVELS, FitDocument, UslFit, UslPoint, fit_usl
from carebench.errors import ConfigError
from carebench.settings import FLOAT, MILLISECONDS, fields_of

#: The simulator settings a calibration determines, in the order the flags are printed.
SIMULATOR_SETTINGS = (
    "profile",
    "min_latency",
    "max_latency",
    "error_rate",
    "contention",
    "coherency",
    "pool_size",
)
#: Below this single-query latency the simulator's asyncio sleeps overshoot noticeably.
SLEEP_RESOLUTION = 0.001
#: A mean throughput error above this says the USL describes the levels poorly.
POOR_FIT = 0.10


class CalibrationSettings(TypedDict):
    max_concurrency: int
    level_duration_s: float
    warmup_s: float
    patients: int


class CalibrationDocument(TypedDict):
    """What `carebench calibrate --json` prints and `--output` saves."""

    carebench_version: str
    backend: str
    #: The connection pool that caps the levels (None: the ideal simulator has no pool).
    pool_size: int | None
    settings: CalibrationSettings
    levels: list[LevelResult]
    fit: FitDocument | None
    #: `carebench serve` arguments for a simulator that behaves like this backend.
    simulator_flags: list[str]
    notes: list[str]
    elapsed_s: float


def _pool_of(backend: BackendConfig, database: SimulatorConfig) -> int | None:
    return database.pool_size if backend.real or database.limited else None


def _checked_levels(config: CalibrationConfig, pool_size: int | None) -> tuple[int, ...]:
    levels = config.levels(pool_size)
    if len(levels) < MIN_LEVELS:
        raise ConfigError(
            f"--db-pool-size ({pool_size}) caps the levels at {levels[-1]}: the fit needs at "
            f"least {MIN_LEVELS} levels, so use --db-pool-size >= {MIN_LEVELS}"
        )
    return levels


def _fit(results: list[LevelResult]) -> tuple[UslFit | None, str | None]:
    """The fit over the levels with successful queries (marking them), or why there is none."""
    usable = [result for result in results if result["mean_ms"] is not None]
    points = [
        UslPoint(result["concurrency"], (result["mean_ms"] or 0.0) / 1000, result["throughput"])
        for result in usable
    ]
    try:
        fit = fit_usl(points)
    except ValueError as exc:
        return None, f"no fit: {exc}"
    for result in usable:
        result["fitted"] = True
    return fit, None


def latency_range(fit: UslFit, single: LevelResult) -> tuple[float, float]:
    """The simulator's uniform [min, max] base latency (s) matching the N=1 measurements.

    Centred on the fitted single-query latency, so the simulator's mean equals the model's L1.
    Its width comes from the measured p10..p90 rather than min..max or the standard deviation:
    a real database's latency has a long right tail that a uniform distribution cannot have,
    and one slow outlier would otherwise widen the range. A uniform [a, b] has p90 - p10 =
    0.8 * (b - a), hence the half-width (p90 - p10) / 1.6.
    """
    p10, p90 = (single["p10_ms"] or 0.0) / 1000, (single["p90_ms"] or 0.0) / 1000
    half = (p90 - p10) / 1.6
    return max(0.0, fit.single_latency - half), fit.single_latency + half


def _flag_value(kind: Any, value: Any) -> str:
    if kind is MILLISECONDS:
        return f"{value * 1000:.4g}ms"
    if kind is FLOAT:
        return f"{value:.4g}"
    return str(kind.render(value))


def simulator_flags(
    fit: UslFit, single: LevelResult, pool_size: int, error_rate: float
) -> list[str]:
    """`carebench serve` flags that make the simulator behave like the calibrated backend."""
    low, high = latency_range(fit, single)
    config = SimulatorConfig(  # validates the values as `serve` will
        min_latency=low,
        max_latency=high,
        error_rate=error_rate,
        profile="realistic",
        pool_size=pool_size,
        contention=fit.sigma,
        coherency=fit.kappa,
    )
    items = {item.name: item for item in fields_of(config, SIMULATOR_SETTINGS)}
    flags: list[str] = []
    for name in SIMULATOR_SETTINGS:
        meta = items[name].setting
        flags += [meta.flag, _flag_value(meta.kind, getattr(config, name))]
    return flags


def _error_rate(results: Sequence[LevelResult]) -> float:
    """Failures of the database itself; ids missing from its seed are a set-up problem."""
    completed = sum(result["completed"] for result in results)
    failed = sum(result["errors"] - result["not_found"] for result in results)
    return failed / completed if completed else 0.0


def _notes(
    results: Sequence[LevelResult],
    levels: Sequence[int],
    config: CalibrationConfig,
    pool_size: int | None,
    backend: str,
) -> list[str]:
    notes: list[str] = []
    if pool_size is not None and results[-1]["concurrency"] == pool_size < config.max_concurrency:
        notes.append(
            f"levels stop at the pool size ({pool_size}, --db-pool-size): beyond it queries "
            "queue for a connection, and the USL describes concurrency at the database"
        )
    if len(results) < len(levels):
        notes.append(
            f"stopped after {results[-1]['concurrency']}: throughput ran more than "
            f"{FALL_FRACTION:.0%} below its peak at {FALL_LEVELS} levels in a row"
        )
    missing = sum(result["not_found"] for result in results)
    if missing:
        notes.append(
            f"{missing} ids were not in the database: seed at least --patients "
            f"({config.patients}) patients (carebench db seed --backend {backend} "
            f"--patients {config.patients})"
        )
    return notes


def _fit_notes(fit: UslFit) -> list[str]:
    notes: list[str] = []
    if fit.clamped:
        notes.append(
            "the least-squares optimum lies outside what the model allows, so it was refitted "
            f"with {', '.join(fit.clamped)}"
        )
    if fit.throughput_error > POOR_FIT:
        notes.append(
            f"the USL describes these levels poorly: predicted throughput is off by "
            f"{fit.throughput_error:.0%} on average"
        )
    if fit.single_latency < SLEEP_RESOLUTION:
        notes.append(
            f"a single query takes {fit.single_latency * 1000:.3g} ms: the simulator's sleeps "
            f"overshoot below about {SLEEP_RESOLUTION * 1000:g} ms, so it will run slower"
        )
    return notes


async def calibrate(
    backend: BackendConfig,
    database: SimulatorConfig,
    config: CalibrationConfig,
    progress: Callable[[LevelResult], None] | None = None,
) -> CalibrationDocument:
    """Measure `backend` at each level and fit the USL; the backend is closed afterwards."""
    began = time.perf_counter()
    effective = database.resolved(real=backend.real)
    pool_size = _pool_of(backend, effective)
    levels = _checked_levels(config, pool_size)
    ids = PatientIds(config.patients, effective.seed)
    window = LevelWindow(config.warmup, config.level_duration)
    source = create_backend(backend, effective)
    await source.start()
    try:
        results = await measure_levels(source, levels, window, ids, progress)
    finally:
        await source.close()
    fit, failure = _fit(results)
    notes = _notes(results, levels, config, pool_size, backend.backend)
    flags: list[str] = []
    if fit is None:
        notes.append(failure or "no fit")
    else:
        notes += _fit_notes(fit)
        flags = simulator_flags(fit, results[0], effective.pool_size, _error_rate(results))
    return {
        "carebench_version": __version__,
        "backend": backend.backend,
        "pool_size": pool_size,
        "settings": {
            "max_concurrency": config.max_concurrency,
            "level_duration_s": config.level_duration,
            "warmup_s": config.warmup,
            "patients": config.patients,
        },
        "levels": results,
        "fit": None if fit is None else fit.as_document(),
        "simulator_flags": flags,
        "notes": notes,
        "elapsed_s": time.perf_counter() - began,
    }
