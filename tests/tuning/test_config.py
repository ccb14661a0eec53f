"""Reading --param, --slo and percentages, and the checks of the tune and capacity settings."""

from __future__ import annotations

import argparse

import pytest

from carebench.errors import ConfigError
from carebench.patterns.base import PatternConfig
from carebench.tuning.config import (
    CapacityConfig,
    TuneConfig,
    parse_parameter,
    parse_slo,
    percent,
)
from carebench.tuning.search import Slo


@pytest.mark.parametrize(
    ("text", "name", "low", "high"),
    [
        ("limit=5..100", "limit", 5, 100),
        ("queue-size=0..500", "queue_size", 0, 500),
        ("--workers=2..64", "workers", 2, 64),
        ("rate_limit=50..1000.5", "rate_limit", 50, 1000.5),
        ("codel_target=1ms..50ms", "codel_target", 0.001, 0.05),
        ("max_wait=0..0.5s", "max_wait", 0, 0.5),
    ],
)
def test_param_names_a_numeric_pattern_setting_and_its_range(text, name, low, high) -> None:
    """Field names, flag spellings and durations with units are all accepted."""
    parameter = parse_parameter(text)

    assert (parameter.name, parameter.low, parameter.high) == (name, low, high)
    assert parameter.flag == "--" + name.replace("_", "-")


def test_param_values_reach_the_pattern_config_as_their_type() -> None:
    """A whole-number setting gets an int (the grid works in floats), shown as the flag takes it."""
    parameter = parse_parameter("limit=5..100")
    config = parameter.config(PatternConfig(), 22.0)

    assert config.limit == 22 and isinstance(config.limit, int)
    assert parameter.show(22.0) == "22"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("limt=5..100", "unknown numeric pattern setting 'limt' (did you mean 'limit'?"),
        ("limit_algorithm=1..2", "unknown numeric pattern setting 'limit_algorithm'"),
        ("limit=5", "expected NAME=LOW..HIGH"),
        ("limit", "expected NAME=LOW..HIGH"),
        ("limit=100..5", "must go up"),
        ("limit=5..5", "must go up"),
        ("limit=2.5..10", "bad bound '2.5' for limit"),
        ("limit=a..10", "bad bound 'a' for limit"),
        ("limit=0..10", "--limit (0) must be >= 1"),
        ("codel_target=1ms..soon", "bad bound 'soon'"),
    ],
)
def test_bad_param_is_refused_with_the_rule(text, message) -> None:
    """Unknown names get the closest valid one; bad bounds and ranges name the rule."""
    with pytest.raises(ConfigError, match=r"^--param") as refused:
        parse_parameter(text)

    assert message in str(refused.value)


@pytest.mark.parametrize(
    ("text", "slo"),
    [
        ("p99<250ms", Slo("p99", 250.0, 1.0)),
        ("p95 <= 0.1s", Slo("p95", 100.0, 1.0)),
        ("p99.9<40", Slo("p99.9", 40.0, 1.0)),
        ("p50<5ms", Slo("p50", 5.0, 1.0)),
    ],
)
def test_slo_reads_a_percentile_and_a_duration(text, slo) -> None:
    """A bare threshold is in ms; `<` and `<=` both read as at-or-under."""
    assert parse_slo(text, 1.0) == slo


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("250ms", "expected PERCENTILE<DURATION such as p99<250ms"),
        ("p99>250ms", "expected PERCENTILE<DURATION"),
        ("p98<250ms", "unknown percentile 'p98' (did you mean"),
        ("p99<fast", "invalid duration 'fast'"),
        ("p99<0ms", "must be > 0 ms"),
    ],
)
def test_bad_slo_is_refused_with_the_rule(text, message) -> None:
    """Every mistake is a ConfigError starting with the flag and saying what was expected."""
    with pytest.raises(ConfigError, match=r"^--slo: ") as refused:
        parse_slo(text, 1.0)

    assert message in str(refused.value)


def test_percent_takes_a_sign_or_not_and_refuses_nonsense() -> None:
    """`5%` and `5` are both five percent; out of 0..100 or not a number is refused."""
    assert percent("5%") == percent("5") == 5.0
    for text in ("-1%", "101", "lots"):
        with pytest.raises(argparse.ArgumentTypeError):
            percent(text)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({}, "--pattern: name the pattern to tune"),
        ({"pattern": "semaphor", "param": "limit=5..10"}, "did you mean 'semaphore'?"),
        ({"pattern": "semaphore"}, "--param: name the setting to search"),
        ({"pattern": "semaphore", "param": "limit=5..10", "points": 1}, "--points (1)"),
        ({"pattern": "semaphore", "param": "limit=5..10", "refine": -1}, "--refine (-1)"),
        ({"pattern": "semaphore", "param": "limit=5..10", "p99": 0.0}, "--p99 (0 ms)"),
    ],
)
def test_tune_settings_are_checked(settings, message) -> None:
    """tune needs a pattern and a parameter, and sane grid sizes and target."""
    with pytest.raises(ConfigError) as refused:
        TuneConfig(**settings)

    assert message in str(refused.value)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"slo": "p99"}, "--slo: expected"),
        ({"errors": 100.0}, "--errors (100%) must be under 100%"),
        ({"precision": 0.0}, "--precision (0%)"),
        ({"start_rate": 0.5}, "--start-rate (0.5) must be >= 1"),
        ({"start_rate": 500.0, "max_rate": 100.0}, "--max-rate (100) must be >= --start-rate"),
        ({"connections": 0}, "--connections (0)"),
    ],
)
def test_capacity_settings_are_checked(settings, message) -> None:
    """capacity refuses an SLO, budget, precision or rate range that cannot be searched."""
    with pytest.raises(ConfigError) as refused:
        CapacityConfig(**settings)

    assert message in str(refused.value)


def test_capacity_defaults_make_a_bounded_search() -> None:
    """The defaults: p99 <= 250 ms with 1 % failing, 50/s doubling to 10k/s, 5 % precision:
    at most 1 + 8 doublings + 5 bisections."""
    config = CapacityConfig()

    assert config.objective == Slo("p99", 250.0, 1.0)
    assert config.search.max_probes == 14
