"""Where a server's fault windows fell in a load test's measured run."""

from __future__ import annotations

from typing import Any, TypedDict


class FaultWindowReport(TypedDict):
    """One fault window, in seconds since the load test began measuring (negative: it began
    before, e.g. during the warm-up)."""

    kind: str
    #: "outage", "slow x5", "errors 50%".
    label: str
    start: float
    #: None: the fault lasted until the server stopped.
    end: float | None


def windows_in_run(faults: Any, now_in_run: float) -> list[FaultWindowReport] | None:
    """The windows of a server's /metrics `backend.faults` document, moved onto the run's
    clock: `now_in_run` is when the document was read, in seconds since measuring began.
    None when `faults` is not such a document (no schedule, or not a carebench server)."""
    if not isinstance(faults, dict):
        return None
    elapsed, schedule = faults.get("elapsed_seconds"), faults.get("schedule")
    if not isinstance(elapsed, int | float) or not isinstance(schedule, list):
        return None
    offset = now_in_run - elapsed
    windows: list[FaultWindowReport] = []
    for window in schedule:
        end = window["end_seconds"]
        windows.append(
            {
                "kind": window["kind"],
                "label": window["label"],
                "start": round(offset + window["start_seconds"], 3),
                "end": None if end is None else round(offset + end, 3),
            }
        )
    return windows
