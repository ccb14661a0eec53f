"""How each pattern came through the fault windows of a run: its goodput before the first
fault, and how long after each window ended goodput was back near that level."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from carebench.faults.timeline import FaultWindowReport
from carebench.loadgen.results import LoadTestResult, TimelinePoint

#: Recovered: goodput back to this share of its level before the window.
RECOVERY_SHARE = 0.9
#: The timeline's interval when a run has a single point to tell it by.
DEFAULT_INTERVAL = 0.5


@dataclass(frozen=True, slots=True)
class Recovery:
    """One window of one run: the goodput to recover, and the recovery after the window."""

    window: FaultWindowReport
    #: Mean goodput (successes/s) over the whole intervals before the run's first fault: the
    #: undisturbed level. None when no whole interval of the run lies there.
    before: float | None
    #: Seconds from the window's end to the start of the first whole interval with goodput
    #: back to RECOVERY_SHARE of `before` (to within the timeline's interval); None if none.
    seconds: float | None
    #: recovered, not recovered (by the next window or the end), no baseline, ongoing (the
    #: fault lasted past the end of the run) or after the run.
    status: str

    @property
    def text(self) -> str:
        """`recovered 0.5 s after` and the like."""
        if self.status == "recovered":
            return f"recovered {self.seconds:.1f} s after"
        if self.status == "not recovered":
            return "not recovered before the next fault or the end of the run"
        if self.status == "ongoing":
            return "still in effect when the run ended"
        if self.status == "after the run":
            return "began after the run ended"
        return "no goodput before the first fault to compare with"


def recoveries(result: LoadTestResult) -> list[Recovery]:
    """One Recovery per fault window of `result` (none without --faults)."""
    windows = sorted(result.get("faults") or [], key=lambda window: window["start"])
    if not windows:
        return []
    timeline = result["timeline"]
    width = _interval(timeline)
    run_end = max(result["duration_seconds"], 0.0)
    whole = [point for point in timeline if point["t"] + width <= run_end + 1e-6]
    undisturbed = [p["goodput"] for p in whole if p["t"] + width <= windows[0]["start"] + 1e-6]
    before = sum(undisturbed) / len(undisturbed) if undisturbed else 0.0
    found = []
    for index, window in enumerate(windows):
        next_start = windows[index + 1]["start"] if index + 1 < len(windows) else math.inf
        found.append(_recovery(window, whole, before, next_start, run_end))
    return found


def _recovery(
    window: FaultWindowReport,
    whole: list[TimelinePoint],
    before: float,
    next_start: float,
    run_end: float,
) -> Recovery:
    end = window["end"]
    if window["start"] >= run_end:
        return Recovery(window, before or None, None, "after the run")
    if end is None or end >= run_end:
        return Recovery(window, before or None, None, "ongoing")
    if before <= 0:
        return Recovery(window, None, None, "no baseline")
    for point in whole:
        if end - 1e-9 <= point["t"] < next_start and point["goodput"] >= RECOVERY_SHARE * before:
            return Recovery(window, before, round(point["t"] - end, 3), "recovered")
    return Recovery(window, before, None, "not recovered")


def _interval(timeline: Sequence[TimelinePoint]) -> float:
    if len(timeline) >= 2:
        return timeline[1]["t"] - timeline[0]["t"]
    return DEFAULT_INTERVAL


def window_span(window: FaultWindowReport) -> str:
    """`2.0-4.0 s`, or `2.0 s-end` for a fault that lasted until the server stopped."""
    end = window["end"]
    return (
        f"{window['start']:.1f}-{end:.1f} s" if end is not None else f"{window['start']:.1f} s-end"
    )


def fault_lines(result: LoadTestResult) -> list[str]:
    """The detail block's lines on the run's fault windows (none without --faults)."""
    found = recoveries(result)
    if not found:
        return []
    before = found[0].before
    level = f"{before:.0f}/s" if before else "n/a"
    lines = [
        f"Faults:           seconds since measuring began; recovered = goodput back to "
        f"{RECOVERY_SHARE:.0%} of {level}",
        "                  (its level before the first fault), to within the timeline's "
        f"{_interval(result['timeline']):g} s:",
    ]
    lines += [
        f"  {item.window['label']:<12} {window_span(item.window):<14} {item.text}" for item in found
    ]
    return lines


def recovery_lines(results: Sequence[LoadTestResult]) -> list[str]:
    """Per pattern, how fast it recovered from each fault window, for the comparison."""
    rows = [(result["pattern"], recoveries(result)) for result in results]
    if not any(found for _, found in rows):
        return []
    lines = [
        f"Recovery after each fault (goodput back to {RECOVERY_SHARE:.0%} of its level before "
        "the first fault):"
    ]
    for pattern, found in rows:
        cells = [f"{item.window['label']} {_short(item)}" for item in found]
        lines.append(f"  {pattern}: {', '.join(cells) if cells else 'no fault windows'}")
    return lines


def _short(item: Recovery) -> str:
    if item.status == "recovered":
        return f"{item.seconds:.1f} s"
    return item.status if item.status != "no baseline" else "n/a"
