"""Settings of `carebench tune` and `carebench capacity`, and how their texts are read:
the tuned parameter (`limit=5..100`), the SLO (`p99<250ms`) and percentages (`5%`)."""

from __future__ import annotations

import argparse
import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from carebench.errors import ConfigError
from carebench.patterns.base import PATTERNS, PatternConfig
from carebench.registry import unknown_name_error
from carebench.settings import (
    FLOAT,
    INT,
    MILLISECONDS,
    SECONDS,
    SWITCH,
    Field,
    Kind,
    fields_of,
    milliseconds,
    setting,
)
from carebench.tuning.search import MIN_RATE, GridSpec, RateSearch, Slo

#: Pattern settings a search can move: the numeric ones.
NUMERIC_KINDS = (INT, FLOAT, SECONDS, MILLISECONDS)
#: SLO percentile -> its key in a LatencySummary.
PERCENTILES = {"p50": "median", "p90": "p90", "p95": "p95", "p99": "p99", "p99.9": "p99_9"}
_SLO = re.compile(r"\s*(p[0-9.]+)\s*(<=?)\s*(\S.*?)\s*")


def percent(text: str) -> float:
    """`5%` or `5` -> 5.0 (a percentage, not a fraction)."""
    try:
        value = float(text.strip().removesuffix("%"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a percentage like 5%, got {text!r}") from None
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"a percentage must be between 0 and 100, got {text!r}")
    return value


PERCENT = Kind("percent", percent, lambda v: f"{v:g}%", lambda v: f"{v:g}%", "PERCENT")


def numeric_settings() -> dict[str, Field]:
    """The pattern settings `--param` accepts, by field name."""
    return {
        item.name: item for item in fields_of(PatternConfig) if item.setting.kind in NUMERIC_KINDS
    }


@dataclass(frozen=True, slots=True)
class Parameter:
    """The pattern setting a tune search moves, and its range."""

    name: str
    item: Field
    low: float
    high: float

    @property
    def flag(self) -> str:
        return self.item.setting.flag

    @property
    def integer(self) -> bool:
        return self.item.setting.kind is INT

    def show(self, value: float) -> str:
        """`value` as the flag would take it: 20, 0.5 s, 5 ms."""
        return self.item.setting.kind.show(int(value) if self.integer else value)

    def config(self, base: PatternConfig, value: float) -> PatternConfig:
        """`base` with this setting at `value` (a ConfigError names the flag when invalid)."""
        changed: dict[str, Any] = {self.name: int(value) if self.integer else value}
        return dataclasses.replace(base, **changed)


def parse_parameter(text: str) -> Parameter:
    """`limit=5..100` (or `--queue-size=10..500`, `codel_target=1ms..50ms`) -> Parameter."""
    name, equals, bounds = text.partition("=")
    low_text, dots, high_text = bounds.partition("..")
    if not equals or not dots:
        raise ConfigError(f"--param: expected NAME=LOW..HIGH (e.g. limit=5..100), got {text!r}")
    name = name.strip().lstrip("-").replace("-", "_")
    choices = numeric_settings()
    if name not in choices:
        raise unknown_name_error("--param", "numeric pattern setting", name, choices)
    item = choices[name]
    low, high = (_bound(item, part) for part in (low_text, high_text))
    if not 0 <= low < high:
        raise ConfigError(
            f"--param: the range of {name} must go up from a value >= 0 "
            f"(got {item.setting.kind.show(low)}..{item.setting.kind.show(high)})"
        )
    parameter = Parameter(name, item, low, high)
    for value in (low, high):
        try:
            parameter.config(PatternConfig(), value)
        except ConfigError as invalid:
            raise ConfigError(f"--param {name}={low_text}..{high_text}: {invalid}") from None
    return parameter


def _bound(item: Field, text: str) -> float:
    try:
        value = float(item.setting.kind.parse(text.strip()))
    except (ValueError, argparse.ArgumentTypeError) as bad:
        raise ConfigError(f"--param: bad bound {text!r} for {item.name} ({bad})") from None
    return value


def parse_slo(text: str, max_failed_percent: float) -> Slo:
    """`p99<250ms` -> Slo (a bare number is in ms; `<` and `<=` both mean at or under)."""
    match = _SLO.fullmatch(text)
    if not match:
        raise ConfigError(f"--slo: expected PERCENTILE<DURATION such as p99<250ms, got {text!r}")
    name, _, threshold = match.groups()
    if name not in PERCENTILES:
        raise unknown_name_error("--slo", "percentile", name, PERCENTILES)
    try:
        seconds = milliseconds(threshold)
    except argparse.ArgumentTypeError as bad:
        raise ConfigError(f"--slo: {bad}") from None
    if seconds <= 0:
        raise ConfigError(f"--slo: the threshold of {name} must be > 0 ms, got {threshold!r}")
    return Slo(name, seconds * 1000.0, max_failed_percent)


@dataclass(frozen=True, slots=True)
class TrialSettings:
    """How long each run lasts and how many runs each candidate or rate gets."""

    duration: float = setting(5.0, "--duration", "measured time of each run", SECONDS)
    warmup: float = setting(
        1.0, "--warmup", "load sent before each run is measured, left out", SECONDS
    )
    trials: int = setting(3, "--trials", "runs per candidate or rate, each on a fresh server", INT)

    def __post_init__(self) -> None:
        if self.duration <= 0:
            raise ConfigError(f"--duration ({self.duration:g}) must be > 0 seconds")
        if self.warmup < 0:
            raise ConfigError(f"--warmup ({self.warmup:g}) must be >= 0 seconds")
        if not 1 <= self.trials <= 50:
            raise ConfigError(f"--trials ({self.trials}) must be between 1 and 50")


@dataclass(frozen=True, slots=True)
class TuneConfig:
    """What `carebench tune` searches: one pattern setting over a range, against a p99 target."""

    pattern: str | None = setting(
        None, "--pattern", "the pattern to tune", choices=PATTERNS.names, metavar="NAME"
    )
    param: str | None = setting(
        None,
        "--param",
        "the numeric pattern setting to search and its range, NAME=LOW..HIGH: limit=5..100, "
        "workers=4..64, queue_size=10..500, rate_limit=50..1000, codel_target=1ms..50ms",
        metavar="NAME=LOW..HIGH",
    )
    p99: float = setting(
        0.25,
        "--p99",
        "target for p99 of successes: a candidate meets it when its median over the trials is "
        "at or under it",
        MILLISECONDS,
    )
    points: int = setting(
        6, "--points", "candidates of the coarse grid (geometric over the range)", INT
    )
    refine: int = setting(
        2,
        "--refine",
        "rounds after the grid, each trying the midpoints between the best candidate and its "
        "neighbours (at most 2 candidates a round)",
        INT,
    )

    def __post_init__(self) -> None:
        if self.pattern is None:
            raise ConfigError("--pattern: name the pattern to tune, e.g. --pattern semaphore")
        PATTERNS.check(self.pattern)
        if self.param is None:
            raise ConfigError("--param: name the setting to search, e.g. --param limit=5..100")
        parse_parameter(self.param)
        if self.p99 <= 0:
            raise ConfigError(f"--p99 ({self.p99 * 1000:g} ms) must be > 0")
        if not 2 <= self.points <= 20:
            raise ConfigError(f"--points ({self.points}) must be between 2 and 20")
        if not 0 <= self.refine <= 10:
            raise ConfigError(f"--refine ({self.refine}) must be between 0 and 10")

    @property
    def parameter(self) -> Parameter:
        return parse_parameter(self.param or "")

    @property
    def grid(self) -> GridSpec:
        parameter = self.parameter
        return GridSpec(parameter.low, parameter.high, self.points, self.refine, parameter.integer)


@dataclass(frozen=True, slots=True)
class CapacityConfig:
    """What `carebench capacity` looks for: the highest open-loop rate within an SLO."""

    slo: str = setting(
        "p99<250ms",
        "--slo",
        f"what a rate must meet: PERCENTILE<DURATION, the percentile of successes' latency "
        f"({', '.join(PERCENTILES)})",
        metavar="pNN<DURATION",
    )
    errors: float = setting(
        1.0,
        "--errors",
        "most requests that may be refused or late at a rate that passes (503/429, 504, "
        "timeouts, connection errors; the database's own 500s are not counted)",
        PERCENT,
    )
    precision: float = setting(
        5.0,
        "--precision",
        "stop bisecting when the failing rate is within this much of the passing one",
        PERCENT,
    )
    start_rate: float = setting(
        50.0, "--start-rate", "first rate probed (arrivals per second)", FLOAT
    )
    max_rate: float = setting(
        10000.0, "--max-rate", "highest rate probed: the search stops there", FLOAT
    )
    connections: int = setting(
        1000, "--connections", "most connections the load generator opens per run", INT
    )

    def __post_init__(self) -> None:
        parse_slo(self.slo, self.errors)
        if self.errors >= 100:
            raise ConfigError(f"--errors ({self.errors:g}%) must be under 100%")
        if not 0 < self.precision < 100:
            raise ConfigError(f"--precision ({self.precision:g}%) must be > 0% and < 100%")
        if self.start_rate < MIN_RATE:
            raise ConfigError(
                f"--start-rate ({self.start_rate:g}) must be >= {MIN_RATE:g} per second"
            )
        if self.max_rate < self.start_rate:
            raise ConfigError(
                f"--max-rate ({self.max_rate:g}) must be >= --start-rate ({self.start_rate:g})"
            )
        if self.connections < 1:
            raise ConfigError(f"--connections ({self.connections}) must be >= 1")

    @property
    def objective(self) -> Slo:
        return parse_slo(self.slo, self.errors)

    @property
    def search(self) -> RateSearch:
        return RateSearch(self.start_rate, self.max_rate, self.precision / 100.0)


@dataclass(frozen=True, slots=True)
class SearchOutput:
    """Where a tune or capacity search goes besides the terminal."""

    json: bool = setting(False, "--json", "print the search as JSON on stdout", SWITCH)
    output: str | None = setting(
        None, "--output", "write the search as JSON to FILE", metavar="FILE"
    )
    html: str | None = setting(
        None, "--html", "write a self-contained HTML report to FILE", metavar="FILE"
    )
    png: str | None = setting(None, "--png", "write the plot of the search to FILE", metavar="FILE")
