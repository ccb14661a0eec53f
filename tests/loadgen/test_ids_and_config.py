"""Choosing patient ids and validating load settings."""

from __future__ import annotations

from collections import Counter

import pytest

from carebench.errors import ConfigError
from carebench.loadgen.config import LoadConfig
from carebench.loadgen.ids import parse_ids


def test_fixed_ids_repeat() -> None:
    """fixed:ID always yields ID."""
    choose = parse_ids("fixed:P777")
    assert {choose() for _ in range(10)} == {"P777"}


def test_uniform_ids_cover_the_range() -> None:
    """uniform:N draws valid ids from N distinct patients, reproducibly with a seed."""
    choose = parse_ids("uniform:20", seed=1)
    drawn = [choose() for _ in range(2000)]
    assert len(set(drawn)) == 20
    again = parse_ids("uniform:20", seed=1)
    assert [again() for _ in range(50)] == drawn[:50]


def test_zipf_ids_are_skewed_towards_hot_patients() -> None:
    """zipf:N:S makes rank 1 the most frequent and far above the median rank."""
    choose = parse_ids("zipf:1000:1.2", seed=3)
    counts = Counter(choose() for _ in range(20_000))
    hottest, hot_count = counts.most_common(1)[0]
    assert hottest == "P00000"
    assert hot_count > 20 * counts.get("P00500", 1)


@pytest.mark.parametrize("spec", ["", "fixed:", "uniform:0", "uniform:x", "zipf:10:-1", "nope:3"])
def test_bad_id_specs_are_config_errors(spec: str) -> None:
    """Malformed --ids specs raise ConfigError with the accepted forms."""
    with pytest.raises(ConfigError, match="--ids takes"):
        parse_ids(spec)


@pytest.mark.parametrize(
    ("kwargs", "flag"),
    [
        ({"requests": 0}, "--requests"),
        ({"concurrency": 0}, "--concurrency"),
        ({"rate": 10.0}, "--rate needs --duration"),
        ({"rate": -1.0, "duration": 1.0}, "--rate"),
        ({"rate": 1.0, "duration": 0.0}, "--duration"),
        ({"arrivals": "bursty"}, "--arrivals"),
        ({"timeout": 0.0}, "--timeout"),
        ({"warmup": -1.0}, "--warmup"),
    ],
)
def test_invalid_load_settings_name_the_flag(kwargs: dict[str, object], flag: str) -> None:
    """Each invalid setting raises ConfigError naming its flag."""
    with pytest.raises(ConfigError, match=flag):
        LoadConfig(**kwargs)  # type: ignore[arg-type]


def test_loop_kind_follows_rate() -> None:
    """Closed loop by default, open loop when a rate is given."""
    assert LoadConfig().loop == "closed"
    assert LoadConfig(rate=5.0, duration=1.0).loop == "open"
    assert LoadConfig(duration=1.0).loop == "closed"
