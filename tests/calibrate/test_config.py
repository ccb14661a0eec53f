"""Calibration settings: levels double up to the cap, and bad values name their flag."""

from __future__ import annotations

import pytest

from carebench.calibrate.config import CalibrationConfig
from carebench.errors import ConfigError


@pytest.mark.parametrize(
    ("max_concurrency", "pool_size", "levels"),
    [
        (128, None, (1, 2, 4, 8, 16, 32, 64, 128)),
        (128, 100, (1, 2, 4, 8, 16, 32, 64, 100)),
        (128, 256, (1, 2, 4, 8, 16, 32, 64, 128)),
        (10, 100, (1, 2, 4, 8, 10)),
        (3, None, (1, 2, 3)),
    ],
)
def test_levels_double_up_to_the_pool_and_end_on_the_cap(max_concurrency, pool_size, levels):
    """Powers of two, capped at the pool (beyond it queries queue), the cap itself measured."""
    assert CalibrationConfig(max_concurrency=max_concurrency).levels(pool_size) == levels


@pytest.mark.parametrize(
    ("settings", "flag"),
    [
        ({"max_concurrency": 0}, "--max-concurrency (0)"),
        ({"max_concurrency": 2}, "--max-concurrency (2)"),
        ({"level_duration": 0.0}, "--level-duration (0)"),
        ({"warmup": -1.0}, "--warmup (-1)"),
        ({"patients": 0}, "--patients (0)"),
    ],
)
def test_bad_values_name_the_flag_and_the_rule(settings, flag) -> None:
    """Each rejected value is reported with its flag and value."""
    with pytest.raises(ConfigError) as raised:
        CalibrationConfig(**settings)

    assert str(raised.value).startswith(f"{flag} must")
