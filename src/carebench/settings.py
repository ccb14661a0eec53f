"""One definition per setting: a config dataclass field carries its flag, help and kind.

Everything else is derived from that field: the argparse option (cli/options.py), its
`CAREBENCH_*` environment default, the flags a load test forwards to the servers it starts
(`as_flags`), and the generated CLI reference (docs/cli.md). Adding a setting is one field:

    workers: int = setting(20, "--workers", "worker tasks", INT)
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

ENV_PREFIX = "CAREBENCH_"
_DURATION = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s)?\s*")


def _duration(text: str, default_unit: str, example: str) -> float:
    match = _DURATION.fullmatch(text)
    if not match:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r} (e.g. {example})")
    value, unit = float(match.group(1)), match.group(2) or default_unit
    return value if unit == "s" else value / 1000.0


def milliseconds(text: str) -> float:
    """A duration in ms: `50`, `50ms` or `0.05s`; returned in seconds."""
    return _duration(text, "ms", "50, 50ms, 0.05s")


def seconds(text: str) -> float:
    """A duration in seconds: `5`, `5s` or `500ms`."""
    return _duration(text, "s", "5, 5s, 500ms")


def level_list(text: str) -> tuple[float, ...]:
    """`10,50,100` -> (10.0, 50.0, 100.0): positive and strictly increasing."""
    try:
        levels = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 10,50,100, got {text!r}") from None
    if not levels or any(level <= 0 for level in levels):
        raise argparse.ArgumentTypeError(f"levels must be positive numbers, got {text!r}")
    if list(levels) != sorted(set(levels)):
        raise argparse.ArgumentTypeError(f"levels must increase, got {text!r}")
    return levels


@dataclass(frozen=True, slots=True)
class Kind:
    """How a setting's text becomes a value, and back.

    `parse` reads a flag or environment value; `render` writes a value as flag text that
    `parse` reads back to the same value (for forwarding); `show` is how help prints it.
    """

    name: str
    parse: Callable[[str], Any]
    render: Callable[[Any], str] = str
    show: Callable[[Any], str] = str
    #: What help shows after the flag; None = the flag's own name in capitals.
    metavar: str | None = None


def _join(values: Sequence[float]) -> str:
    return ",".join(f"{value:g}" for value in values)


TEXT = Kind("text", str)
INT = Kind("int", int, metavar="N")


def finite(text: str) -> float:
    """A finite number: `nan` and `inf` parse as floats but mean nothing as a setting (a
    rate limit of nan admitted everything)."""
    value = float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


FLOAT = Kind("float", finite, show=lambda value: f"{value:g}", metavar="X")


def _seconds_text(value: float) -> str:
    # The shortest text that reads back to the same float, without an exponent (8.8e-05 is
    # not a duration a user would type, so the parser refuses it).
    return f"{Decimal(repr(value)):f}s"


SECONDS = Kind("duration", seconds, _seconds_text, lambda value: f"{value:g} s", "DURATION")
MILLISECONDS = Kind(
    "duration",
    milliseconds,
    _seconds_text,
    lambda value: f"{value * 1000:g} ms",
    "DURATION",
)
LEVELS = Kind("levels", level_list, _join, _join, "LEVELS")
#: An on/off flag (`--circuit-breaker`); its variable is on for 1, true, yes or on.
SWITCH = Kind("switch", lambda text: text.strip().lower() in ("1", "true", "yes", "on"))


@dataclass(frozen=True, slots=True)
class Setting:
    """What the command line needs to know about one config field."""

    flag: str
    help: str
    kind: Kind = TEXT
    #: The valid names, listed in help and docs (a registry's names, or a fixed tuple).
    choices: Callable[[], Sequence[str]] | None = None
    #: Whether a load test passes it on to the servers it starts (server settings only).
    forwarded: bool = True
    metavar: str | None = None

    @property
    def env(self) -> str:
        """`--db-pool-size` -> `CAREBENCH_DB_POOL_SIZE`."""
        return ENV_PREFIX + self.flag.lstrip("-").replace("-", "_").upper()


def setting(
    default: Any,
    flag: str,
    help: str,
    kind: Kind = TEXT,
    *,
    choices: Callable[[], Sequence[str]] | Sequence[str] | None = None,
    forwarded: bool = True,
    metavar: str | None = None,
) -> Any:
    """A dataclass field with its command-line definition attached (see the module doc)."""
    names: Callable[[], Sequence[str]] | None
    if choices is None or callable(choices):
        names = choices
    else:
        fixed = tuple(choices)
        names = lambda: fixed  # noqa: E731
    meta = Setting(flag, help, kind, names, forwarded, metavar)
    return dataclasses.field(default=default, metadata={"setting": meta})


@dataclass(frozen=True, slots=True)
class Field:
    """A config field that is a setting: its name (the argparse dest), default and definition."""

    name: str
    default: Any
    setting: Setting


def fields_of(config: type[Any] | Any, only: Sequence[str] | None = None) -> Iterator[Field]:
    """The settings of a config dataclass (or instance), in declaration order."""
    for item in dataclasses.fields(config):
        meta: Setting | None = item.metadata.get("setting")
        if meta is not None and (only is None or item.name in only):
            yield Field(item.name, item.default, meta)


def as_flags(config: Any) -> list[str]:
    """A config's forwarded settings as `carebench serve` arguments (None values left out)."""
    flags: list[str] = []
    for item in fields_of(config):
        value = getattr(config, item.name)
        if not item.setting.forwarded or value is None:
            continue
        if item.setting.kind is SWITCH:
            flags += [item.setting.flag] if value else []
        else:
            flags += [item.setting.flag, item.setting.kind.render(value)]
    return flags


def changed_flags(config: Any) -> list[str]:
    """The flags of the settings whose value differs from the field's default."""
    return [
        item.setting.flag
        for item in fields_of(config)
        if getattr(config, item.name) != item.default
    ]
