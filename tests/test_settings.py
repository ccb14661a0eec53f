"""Settings defined once on config dataclasses: kinds round-trip, flags forward exactly."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from carebench.backends.simulator import SimulatorConfig
from carebench.cli import build_parser
from carebench.cli.options import server_setup
from carebench.loadgen.config import LoadConfig, SweepConfig
from carebench.patterns.base import PatternConfig
from carebench.resilience.config import ResilienceConfig
from carebench.server.config import ServerConfig
from carebench.server.setup import ServerSetup
from carebench.settings import (
    FLOAT,
    INT,
    LEVELS,
    MILLISECONDS,
    SECONDS,
    as_flags,
    changed_flags,
    fields_of,
    level_list,
)

CONFIGS = [ServerConfig, PatternConfig, SimulatorConfig, ResilienceConfig, LoadConfig, SweepConfig]

#: A setup where every forwarded setting differs from its default.
CHANGED = ServerSetup(
    ServerConfig(request_timeout=4.5, critical_timeout=1.25, batch_timeout=20.0, server="granian"),
    PatternConfig(
        workers=7, queue_size=3, limit=9, max_wait=0.25, rate_limit=12.5, burst=4,
        limit_algorithm="vegas",
    ),
    SimulatorConfig(
        min_latency=0.0125, max_latency=0.02, error_rate=0.5, profile="ideal", pool_size=11,
        pool_timeout=0.75, contention=0.1, coherency=0.002, seed=42,
    ),
    ResilienceConfig(retries=2, circuit_breaker=True, breaker_threshold=3, breaker_reset=1.5),
)  # fmt: skip


@pytest.mark.parametrize("config", CONFIGS, ids=lambda config: config.__name__)
def test_every_field_of_a_config_is_a_setting(config: type) -> None:
    """A config field without a flag would be a setting no one can set (seed aside)."""
    settings = {item.name for item in fields_of(config)}
    plain = {field.name for field in dataclasses.fields(config)} - settings

    assert plain <= {"seed"}
    assert all(item.setting.flag.startswith("--") for item in fields_of(config))


def test_flags_and_environment_names_are_unique_per_config_section() -> None:
    """No two settings of the server share a flag or a variable (argparse would merge them)."""
    items = [item for config in CONFIGS[:4] for item in fields_of(config)]

    assert len({item.setting.flag for item in items}) == len(items)
    assert len({item.setting.env for item in items}) == len(items)


def test_environment_name_follows_the_flag() -> None:
    """--db-pool-size is CAREBENCH_DB_POOL_SIZE, whatever the field is called."""
    (item,) = fields_of(SimulatorConfig, only=["pool_size"])

    assert item.setting.env == "CAREBENCH_DB_POOL_SIZE"


def parse_serve(flags: list[str]) -> argparse.Namespace:
    return build_parser().parse_args(["serve", *flags])


def test_forwarded_flags_recreate_every_changed_setting() -> None:
    """What a load test passes to `carebench serve` parses back to the same settings."""
    assert server_setup(parse_serve(CHANGED.as_flags())) == CHANGED


def test_default_setup_round_trips_too() -> None:
    """Defaults survive rendering and parsing (durations, floats and None seeds included)."""
    assert server_setup(parse_serve(ServerSetup().as_flags())) == ServerSetup()


def test_forwarding_leaves_out_the_servers_own_address_and_logging() -> None:
    """Host, port, drain, log level, quiet and profiling belong to each started server."""
    flags = as_flags(ServerConfig(host="0.0.0.0", port=9, log_level="debug", quiet=True))

    assert flags == ["--request-timeout", "5.0s", "--critical-timeout", "2.0s",
                     "--batch-timeout", "30.0s", "--server", "uvicorn",
                     "--processes", "1"]  # fmt: skip


def test_switches_forward_only_when_on() -> None:
    """--circuit-breaker appears when set and is absent (not 'False') when not."""
    assert "--circuit-breaker" in as_flags(ResilienceConfig(circuit_breaker=True))
    assert "--circuit-breaker" not in as_flags(ResilienceConfig())


def test_changed_flags_name_exactly_the_non_defaults() -> None:
    """changed_flags reports the flags whose values differ from the field defaults."""
    assert changed_flags(PatternConfig(workers=3, burst=2)) == ["--workers", "--burst"]
    assert ServerSetup().changed_flags() == []


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        (SECONDS, 0.1),
        (SECONDS, 30.0),
        (MILLISECONDS, 0.0125),
        (MILLISECONDS, 8.839e-05),
        (INT, 7),
        (LEVELS, (10.0, 50.5)),
    ],
)
def test_kinds_render_text_that_parses_back(kind, value) -> None:
    """render() writes what parse() reads back to the identical value."""
    assert kind.parse(kind.render(value)) == value


@pytest.mark.parametrize("text", ["", "10,x", "0,10", "50,10", "10,10"])
def test_level_lists_must_be_positive_and_increasing(text: str) -> None:
    """Bad level lists are refused with an argparse error (exit 2 at the CLI)."""
    with pytest.raises(argparse.ArgumentTypeError):
        level_list(text)


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "NaN"])
def test_a_float_setting_refuses_nan_and_infinity(text: str) -> None:
    """float() reads them, but a rate limit of nan admitted every request."""
    with pytest.raises(argparse.ArgumentTypeError, match="finite number"):
        FLOAT.parse(text)
    assert FLOAT.parse("2.5") == 2.5
