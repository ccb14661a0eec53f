"""LatencyRecorder.to_state / from_state: another process's recorder rebuilt exactly."""

from __future__ import annotations

import json
import random

import pytest

from carebench.metrics.latency import HIGHEST_US, LatencyRecorder, LatencyState


def recorded(seed: int, n: int = 500, significant_figures: int = 3) -> LatencyRecorder:
    rng = random.Random(seed)
    recorder = LatencyRecorder(significant_figures)
    for _ in range(n):
        recorder.record(rng.lognormvariate(-3, 1.5))
    return recorder


@pytest.mark.parametrize("significant_figures", [2, 3])
def test_state_rebuilds_an_equal_recorder(significant_figures: int) -> None:
    """Summary, spectrum, encoding and sums survive a JSON round trip of the state."""
    original = recorded(1, significant_figures=significant_figures)
    state = json.loads(json.dumps(original.to_state()))
    rebuilt = LatencyRecorder.from_state(state)
    assert rebuilt.count == original.count
    assert rebuilt.summary_ms() == original.summary_ms()
    assert rebuilt.spectrum_ms() == original.spectrum_ms()
    assert rebuilt.encode() == original.encode()
    assert rebuilt.total_seconds() == original.total_seconds()


def test_merged_states_equal_one_recorder_of_every_value() -> None:
    """Recorders rebuilt from two states merge into what one recorder of both holds."""
    first, second = recorded(1), recorded(2, n=300)
    both = LatencyRecorder.merged([first, second])
    merged = LatencyRecorder.merged(
        LatencyRecorder.from_state(part.to_state()) for part in (first, second)
    )
    assert merged.summary_ms() == both.summary_ms()
    assert merged.encode() == both.encode()


def test_state_is_sparse_and_keeps_huge_sums_exact() -> None:
    """Only used slots are listed; a sum of squares past 2**64 stays an exact integer."""
    recorder = LatencyRecorder()
    for _ in range(6000):
        recorder.record(HIGHEST_US / 1e6)
    state = recorder.to_state()
    assert state["counts"] == [6000]
    assert int(state["sum_squares_us"]) == 6000 * HIGHEST_US**2 > 2**64
    assert LatencyRecorder.from_state(state).summary_ms() == recorder.summary_ms()


def test_empty_recorder_round_trips() -> None:
    """An empty recorder's state rebuilds an empty recorder."""
    rebuilt = LatencyRecorder.from_state(LatencyRecorder().to_state())
    assert rebuilt.count == 0
    assert rebuilt.summary_ms()["p99"] == 0.0


@pytest.mark.parametrize(
    ("indices", "counts", "message"),
    [
        ([0, 1], [1], "differ in length"),
        ([10**9], [1], "invalid"),
        ([-1], [1], "invalid"),
        ([5], [-3], "invalid"),
    ],
)
def test_malformed_state_is_refused(indices: list[int], counts: list[int], message: str) -> None:
    """Slots out of range, negative counts or unpaired lists raise ValueError."""
    state: LatencyState = {
        "significant_figures": 3,
        "indices": indices,
        "counts": counts,
        "sum_us": "0",
        "sum_squares_us": "0",
    }
    with pytest.raises(ValueError, match=message):
        LatencyRecorder.from_state(state)
