"""When a dead server process is replaced: the backoff, the give-up rule, the restart count."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from carebench.server.restarts import (
    RestartBackoff,
    RestartPolicy,
    describe_exit,
    read_restarts,
    write_restarts,
)


def test_the_delay_doubles_up_to_the_cap_then_the_parent_gives_up() -> None:
    """Deaths close together wait 0.25, 0.5, 1, 2, 4 s; one more within the window is None."""
    backoff = RestartBackoff(RestartPolicy())
    delays = [backoff.after_death(now) for now in (0.0, 1.0, 2.0, 3.0, 4.0, 5.0)]
    assert delays == [0.25, 0.5, 1.0, 2.0, 4.0, None]
    assert backoff.recent == 6


def test_the_cap_holds_when_more_deaths_are_allowed() -> None:
    """The delay never passes max_delay."""
    backoff = RestartBackoff(RestartPolicy(first_delay=1.0, max_delay=3.0, max_deaths=10))
    assert [backoff.after_death(float(now)) for now in range(4)] == [1.0, 2.0, 3.0, 3.0]


def test_deaths_older_than_the_window_are_forgotten() -> None:
    """A death every 61 s never accumulates: each waits the first delay, none gives up."""
    backoff = RestartBackoff(RestartPolicy(window=60.0))
    delays = [backoff.after_death(61.0 * index) for index in range(20)]
    assert delays == [0.25] * 20
    assert backoff.recent == 1


def test_a_death_exactly_one_window_later_is_a_fresh_start() -> None:
    """The window is half-open: a death `window` seconds ago no longer counts."""
    backoff = RestartBackoff(RestartPolicy(window=10.0, max_deaths=1))
    assert backoff.after_death(0.0) == 0.25
    assert backoff.after_death(9.9) is None
    assert backoff.after_death(19.9) is None  # 9.9 still counts
    assert backoff.after_death(40.0) == 0.25


@pytest.mark.parametrize(
    ("exitcode", "text"),
    [
        (1, "status 1"),
        (0, "status 0"),
        (-signal.SIGKILL, "killed by SIGKILL"),
        (-signal.SIGSEGV, "killed by SIGSEGV"),
        (-200, "killed by signal 200"),
        (None, "status None"),
    ],
)
def test_an_exit_is_described_by_status_or_signal(exitcode: int | None, text: str) -> None:
    """The log line names the signal that killed a process, or its exit status."""
    assert describe_exit(exitcode) == text


def test_the_restart_count_reads_back(tmp_path: Path) -> None:
    """0 before any restart, then what the parent wrote last; no partial file is left."""
    assert read_restarts(tmp_path) == 0
    write_restarts(tmp_path, 1)
    write_restarts(tmp_path, 2)
    assert read_restarts(tmp_path) == 2
    assert [path.name for path in tmp_path.iterdir()] == ["restarts"]
