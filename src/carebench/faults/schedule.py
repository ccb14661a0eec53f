"""The `--faults` schedule: when the backend fails, how, and for how long.

    at 10s outage for 5s; at 30s slow x5 for 10s; at 50s errors 50% for 5s

Entries are separated by `;`. Each is `at TIME KIND [for DURATION]`, times in seconds since
the server started serving (`10`, `10s`, `500ms`); without `for` the fault lasts until the
server stops. Kinds:

* `outage`: every query fails at once, as against an unreachable database;
* `slow xN`: every query takes N times as long as it would have;
* `errors P%`: that share of queries fail with a database error.

Windows are half-open, [at, at + for), and may touch but not overlap: one fault at a time.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import math
from dataclasses import dataclass, field
from typing import Literal

from carebench.settings import seconds

FaultKind = Literal["outage", "slow", "errors"]
FAULT_KINDS: tuple[FaultKind, ...] = ("outage", "slow", "errors")
EXAMPLE = "at 10s outage for 5s; at 30s slow x5 for 10s; at 50s errors 50% for 5s"


class FaultScheduleError(ValueError):
    """The schedule's text is invalid; the message quotes the entry and says what to write."""


@dataclass(frozen=True, slots=True)
class FaultWindow:
    """One fault: `kind` from `start` for `duration` seconds (None: until the server stops)."""

    start: float
    duration: float | None
    kind: FaultKind
    #: slow: how many times as long each query takes.
    factor: float = 1.0
    #: errors: the share of queries that fail, in (0, 1].
    rate: float = 0.0

    @property
    def end(self) -> float:
        return math.inf if self.duration is None else self.start + self.duration

    @property
    def label(self) -> str:
        """`outage`, `slow x5`, `errors 50%`."""
        if self.kind == "slow":
            return f"slow x{self.factor:g}"
        if self.kind == "errors":
            return f"errors {self.rate * 100:g}%"
        return "outage"

    @property
    def text(self) -> str:
        """The entry as `--faults` reads it back."""
        lasting = "" if self.duration is None else f" for {self.duration:g}s"
        return f"at {self.start:g}s {self.label}{lasting}"

    def contains(self, elapsed: float) -> bool:
        return self.start <= elapsed < self.end


@dataclass(frozen=True, slots=True)
class FaultSchedule:
    """Fault windows in time order, none overlapping."""

    windows: tuple[FaultWindow, ...] = ()
    #: The windows' start times, for a binary search per query.
    _starts: tuple[float, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ordered = tuple(sorted(self.windows, key=lambda window: window.start))
        object.__setattr__(self, "windows", ordered)
        object.__setattr__(self, "_starts", tuple(window.start for window in ordered))
        for before, after in itertools.pairwise(ordered):
            if after.start < before.end:
                raise FaultScheduleError(
                    f"{before.text!r} and {after.text!r} overlap: one fault at a time (let one "
                    "end before the next starts)"
                )

    def active(self, elapsed: float) -> FaultWindow | None:
        """The fault in effect `elapsed` seconds after the schedule's start, if any."""
        index = bisect.bisect_right(self._starts, elapsed) - 1
        if index < 0:
            return None
        window = self.windows[index]
        return window if window.contains(elapsed) else None

    @property
    def text(self) -> str:
        return "; ".join(window.text for window in self.windows)

    def __bool__(self) -> bool:
        return bool(self.windows)


def parse_schedule(text: str) -> FaultSchedule:
    """The schedule `text` describes; `FaultScheduleError` saying what is wrong otherwise."""
    entries = [entry.strip() for entry in text.split(";")]
    windows = [_parse_entry(entry) for entry in entries if entry]
    if not windows:
        raise FaultScheduleError(f"no fault in {text!r}; e.g. {EXAMPLE!r}")
    return FaultSchedule(tuple(windows))


def _parse_entry(entry: str) -> FaultWindow:
    words = entry.lower().split()
    if len(words) < 3 or words[0] != "at":
        raise FaultScheduleError(
            f"{entry!r}: expected 'at TIME KIND [for DURATION]', e.g. 'at 10s outage for 5s'"
        )
    start = _time(entry, words[1], "start time")
    kind, rest = words[2], words[3:]
    factor, rate = 1.0, 0.0
    if kind == "outage":
        pass
    elif kind == "slow":
        factor, rest = _factor(entry, rest), rest[1:]
    elif kind == "errors":
        rate, rest = _share(entry, rest), rest[1:]
    else:
        raise FaultScheduleError(
            f"{entry!r}: unknown fault {kind!r}; use outage, slow xN or errors P%"
        )
    duration: float | None = None
    if rest:
        if rest[0] != "for" or len(rest) != 2:
            raise FaultScheduleError(
                f"{entry!r}: unexpected {' '.join(rest)!r}; only 'for DURATION' may follow "
                f"the fault"
            )
        duration = _time(entry, rest[1], "duration")
        if duration <= 0:
            raise FaultScheduleError(f"{entry!r}: the duration must be > 0")
    return FaultWindow(start, duration, kind, factor, rate)  # type: ignore[arg-type]


def _time(entry: str, word: str, what: str) -> float:
    try:
        return seconds(word)
    except argparse.ArgumentTypeError:
        raise FaultScheduleError(
            f"{entry!r}: invalid {what} {word!r}; write seconds like 10, 10s or 500ms"
        ) from None


def _factor(entry: str, rest: list[str]) -> float:
    word = rest[0] if rest else ""
    digits = word.removeprefix("x").removesuffix("x") if word != "x" else ""
    try:
        factor = float(digits)
    except ValueError:
        raise FaultScheduleError(
            f"{entry!r}: slow needs a factor like x5 (each query takes 5 times as long)"
        ) from None
    if not math.isfinite(factor) or factor <= 1:
        raise FaultScheduleError(f"{entry!r}: the slowdown factor must be > 1, got {word!r}")
    return factor


def _share(entry: str, rest: list[str]) -> float:
    word = rest[0] if rest else ""
    try:
        if not word.endswith("%"):
            raise ValueError(word)
        percent = float(word[:-1])
    except ValueError:
        raise FaultScheduleError(
            f"{entry!r}: errors needs a share like 50% (half the queries fail)"
        ) from None
    if not 0 < percent <= 100:
        raise FaultScheduleError(f"{entry!r}: the error share must be in (0%, 100%], got {word}")
    return percent / 100.0
