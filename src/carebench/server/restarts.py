"""When `serve --processes N` replaces a server process that died, and when it gives up.

A process that exits without being asked (a crash, an out-of-memory kill, `kill -9`) is
replaced after a backoff that doubles with each death of the last `window` seconds, from
`first_delay` up to `max_delay`: one crash costs a quarter of a second, a process that keeps
dying is not respawned in a tight loop. More than `max_deaths` deaths within the window and the
parent gives up: something is wrong that a restart will not fix, and a group that keeps losing
processes (and their counts) should stop, as it did before restarts existed, rather than serve
on from fewer and fewer processes.

The parent writes how many processes it has replaced to a file in the group's directory; the
process answering /metrics reads it (`processes_restarted`).
"""

from __future__ import annotations

import os
import signal
from collections import deque
from dataclasses import dataclass
from pathlib import Path

#: The delay before the first replacement in a window; each further death doubles it.
FIRST_DELAY = 0.25
#: The longest delay before a replacement.
MAX_DELAY = 4.0
#: More deaths than this within `WINDOW` seconds and the parent gives up.
MAX_DEATHS = 5
WINDOW = 60.0
RESTARTS_FILE = "restarts"


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """How long to wait before replacing a dead process, and when to stop replacing them."""

    first_delay: float = FIRST_DELAY
    max_delay: float = MAX_DELAY
    max_deaths: int = MAX_DEATHS
    window: float = WINDOW


class RestartBackoff:
    """The deaths of the last `window` seconds, and the delay they call for."""

    def __init__(self, policy: RestartPolicy) -> None:
        self.policy = policy
        self._deaths: deque[float] = deque()

    @property
    def recent(self) -> int:
        """Deaths counted in the window at the last `after_death`."""
        return len(self._deaths)

    def after_death(self, now: float) -> float | None:
        """Record a death at `now` (seconds, monotonic): the delay before its replacement, or
        None when there have been more than `max_deaths` within the window."""
        policy = self.policy
        self._deaths.append(now)
        while self._deaths[0] <= now - policy.window:
            self._deaths.popleft()
        if len(self._deaths) > policy.max_deaths:
            return None
        return min(policy.max_delay, policy.first_delay * 2.0 ** (len(self._deaths) - 1))


def describe_exit(exitcode: int | None) -> str:
    """`status 1` or `killed by SIGKILL`: how a process ended, from its exit code."""
    if exitcode is None or exitcode >= 0:
        return f"status {exitcode}"
    try:
        return f"killed by {signal.Signals(-exitcode).name}"
    except ValueError:
        return f"killed by signal {-exitcode}"


def write_restarts(directory: Path, count: int) -> None:
    """Record the group's restarts so far (replaced atomically: a reader sees old or new)."""
    partial = directory / f".{RESTARTS_FILE}.partial"
    partial.write_text(str(count))
    os.replace(partial, directory / RESTARTS_FILE)


def read_restarts(directory: Path) -> int:
    """The group's restarts so far; 0 before the first."""
    try:
        return int((directory / RESTARTS_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return 0
