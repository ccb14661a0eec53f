"""The --faults parser: what it accepts, what it refuses (and how it says so), and which
window is in effect when."""

from __future__ import annotations

import math

import pytest

from carebench.faults.schedule import FaultSchedule, FaultScheduleError, FaultWindow, parse_schedule


def test_the_issues_example_parses_into_three_windows() -> None:
    schedule = parse_schedule(
        "at 10s outage for 5s; at 30s slow x5 for 10s; at 50s errors 50% for 5s"
    )

    assert schedule.windows == (
        FaultWindow(10.0, 5.0, "outage"),
        FaultWindow(30.0, 10.0, "slow", factor=5.0),
        FaultWindow(50.0, 5.0, "errors", rate=0.5),
    )
    assert [window.label for window in schedule.windows] == ["outage", "slow x5", "errors 50%"]


@pytest.mark.parametrize(
    ("text", "window"),
    [
        ("at 0 outage for 500ms", FaultWindow(0.0, 0.5, "outage")),
        ("AT 1.5s SLOW 2.5x FOR 2", FaultWindow(1.5, 2.0, "slow", factor=2.5)),
        ("  at 250ms   errors 100%  ", FaultWindow(0.25, None, "errors", rate=1.0)),
        ("at 3s outage;", FaultWindow(3.0, None, "outage")),
    ],
)
def test_units_case_spacing_and_open_ended_windows(text: str, window: FaultWindow) -> None:
    """Times take s or ms (bare: seconds); without `for`, a fault lasts until the end."""
    assert parse_schedule(text).windows == (window,)


def test_windows_are_sorted_and_text_reads_back_to_the_same_schedule() -> None:
    schedule = parse_schedule("at 5s outage; at 1s slow x3 for 2s; at 3s errors 12.5% for 1s")

    assert [window.start for window in schedule.windows] == [1.0, 3.0, 5.0]
    assert schedule.windows[2].end == math.inf
    assert parse_schedule(schedule.text) == schedule


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "no fault"),
        (" ; ", "no fault"),
        ("outage for 5s", "expected 'at TIME KIND"),
        ("at 10s", "expected 'at TIME KIND"),
        ("at ten outage", "invalid start time 'ten'"),
        ("at -1s outage", "invalid start time '-1s'"),
        ("at 1m outage", "invalid start time '1m'"),
        ("at 1s brownout for 2s", "unknown fault 'brownout'"),
        ("at 1s slow for 2s", "slow needs a factor like x5"),
        ("at 1s slow x for 2s", "slow needs a factor like x5"),
        ("at 1s slow xfast for 2s", "slow needs a factor like x5"),
        ("at 1s slow x1 for 2s", "factor must be > 1"),
        ("at 1s slow x0.5 for 2s", "factor must be > 1"),
        ("at 1s slow xnan for 2s", "factor must be > 1"),
        ("at 1s errors for 2s", "errors needs a share like 50%"),
        ("at 1s errors 50 for 2s", "errors needs a share like 50%"),
        ("at 1s errors 0% for 2s", "error share must be in (0%, 100%]"),
        ("at 1s errors 150% for 2s", "error share must be in (0%, 100%]"),
        ("at 1s outage for", "only 'for DURATION' may follow"),
        ("at 1s outage during 2s", "only 'for DURATION' may follow"),
        ("at 1s outage for 2s please", "only 'for DURATION' may follow"),
        ("at 1s outage for soon", "invalid duration 'soon'"),
        ("at 1s outage for 0s", "duration must be > 0"),
        ("at 1s outage for 5s; at 3s slow x2 for 1s", "overlap"),
        ("at 5s outage; at 30s errors 5% for 1s", "overlap"),
    ],
)
def test_bad_schedules_are_refused_with_what_to_write(text: str, says: str) -> None:
    with pytest.raises(FaultScheduleError) as refused:
        parse_schedule(text)
    assert says in str(refused.value)


def test_an_overlap_names_both_windows() -> None:
    with pytest.raises(
        FaultScheduleError, match=r"'at 1s outage for 5s' and 'at 3s slow x2 for 1s'"
    ):
        parse_schedule("at 3s slow x2 for 1s; at 1s outage for 5s")


def test_windows_may_touch() -> None:
    """Half-open windows: one may start the instant the previous one ends."""
    schedule = parse_schedule("at 1s outage for 1s; at 2s slow x2 for 1s")

    assert schedule.active(1.999) == schedule.windows[0]
    assert schedule.active(2.0) == schedule.windows[1]


def test_active_is_the_window_in_effect_or_none() -> None:
    schedule = parse_schedule("at 1s outage for 1s; at 3s errors 50% for 1s; at 10s slow x2")
    outage, errors, slow = schedule.windows

    expected = {
        0.0: None, 0.999: None, 1.0: outage, 1.5: outage, 2.0: None, 2.5: None,
        3.0: errors, 3.999: errors, 4.0: None, 9.99: None, 10.0: slow, 1e6: slow,
    }  # fmt: skip
    assert {t: schedule.active(t) for t in expected} == expected


def test_an_empty_schedule_is_false_and_never_active() -> None:
    assert not FaultSchedule()
    assert FaultSchedule().active(5.0) is None
    assert parse_schedule("at 1s outage")
