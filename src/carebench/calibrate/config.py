"""How a calibration runs: the concurrency levels, how long each is measured, which ids."""

from __future__ import annotations

from dataclasses import dataclass

from carebench.backends.dataset import DEFAULT_PATIENTS
from carebench.calibrate.usl import MIN_LEVELS
from carebench.errors import ConfigError
from carebench.settings import INT, SECONDS, setting


@dataclass(frozen=True, slots=True)
class CalibrationConfig:
    """The levels (1, 2, 4, ... up to --max-concurrency) and the time spent on each."""

    max_concurrency: int = setting(
        128,
        "--max-concurrency",
        "highest number of queries run at once; levels double from 1 (capped at the pool size)",
        INT,
    )
    level_duration: float = setting(
        2.0, "--level-duration", "measured time at each concurrency level", SECONDS
    )
    warmup: float = setting(
        0.5, "--warmup", "unmeasured time at the start of each level (connections, caches)", SECONDS
    )
    patients: int = setting(
        DEFAULT_PATIENTS,
        "--patients",
        "ids are drawn uniformly from P00000 up to this many seeded patients",
        INT,
    )

    def __post_init__(self) -> None:
        if self.max_concurrency < MIN_LEVELS:
            raise ConfigError(
                f"--max-concurrency ({self.max_concurrency}) must be >= {MIN_LEVELS}: the fit "
                f"needs at least {MIN_LEVELS} levels (1, 2, {MIN_LEVELS})"
            )
        if self.level_duration <= 0:
            raise ConfigError(f"--level-duration ({self.level_duration:g}) must be > 0")
        if self.warmup < 0:
            raise ConfigError(f"--warmup ({self.warmup:g}) must be >= 0")
        if self.patients < 1:
            raise ConfigError(f"--patients ({self.patients}) must be >= 1")

    def levels(self, pool_size: int | None) -> tuple[int, ...]:
        """1, 2, 4, ... up to --max-concurrency, capped at `pool_size` (None: no pool), with
        the cap itself as the last level so the whole pool is measured.

        Beyond the pool, queries queue for a connection: the database still runs only
        `pool_size` at once, and the USL describes concurrency at the database.
        """
        top = self.max_concurrency if pool_size is None else min(self.max_concurrency, pool_size)
        levels = [1]
        while levels[-1] * 2 <= top:
            levels.append(levels[-1] * 2)
        if levels[-1] != top:
            levels.append(top)
        return tuple(levels)
