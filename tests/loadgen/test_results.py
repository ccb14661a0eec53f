"""The result shapes: what RunRecorder produces matches its TypedDicts and the published schema."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import msgspec

from carebench.loadgen.results import (
    FLUSH_EVERY,
    OUTCOMES,
    LoadTestResult,
    OutcomeCounts,
    RunRecorder,
    RunSummary,
    classify,
    outcome_counts,
)
from carebench.metrics.latency import LatencyRecorder


def schema_fields() -> dict[str, Any]:
    text = resources.files("carebench.report").joinpath("schema.json").read_text()
    result: dict[str, Any] = json.loads(text)["$defs"]["result"]
    return result


def recorded() -> RunRecorder:
    recorder = RunRecorder(started=0.0)
    recorder.record("success", 0.05, now=0.1, status=200, priority="critical")
    recorder.record("rejected", 0.001, now=0.2, status=503, priority="batch")
    recorder.record("timeout", 5.0, now=0.9)
    return recorder


def test_buffered_recording_is_exact_and_up_to_date_when_read() -> None:
    """RunRecorder buffers requests and folds them in later: every read sees all of them, with
    each outcome's histogram, the status counts and each interval exactly as recorded."""
    recorder = RunRecorder(started=10.0, interval=0.5)
    expected_latency = {outcome: LatencyRecorder() for outcome in OUTCOMES}
    expected_slots: dict[int, dict[str, int]] = {}
    statuses: dict[int, int] = {}
    plan = [
        ("success", 200),
        ("rejected", 503),
        ("rejected", 429),
        ("backend_error", 500),
        ("client_error", 404),
        ("timeout", 0),
        ("connection_error", 0),
    ]
    total = FLUSH_EVERY * 2 + 7
    for n in range(total):
        outcome, status = plan[n % len(plan)]
        latency, done = (n % 97) / 1000, 10.0 + n * 0.0003
        recorder.record(outcome, latency, done, status)  # type: ignore[arg-type]
        expected_latency[outcome].record(latency)  # type: ignore[index]
        slot = expected_slots.setdefault(int((done - 10.0) / 0.5), {})
        slot[outcome] = slot.get(outcome, 0) + 1
        if status:
            statuses[status] = statuses.get(status, 0) + 1
        if n == 5:  # a read mid-run sees what was recorded so far
            assert recorder.total == 6
    assert recorder.total == total
    assert recorder.status_codes == statuses
    for outcome in OUTCOMES:
        assert recorder.latency[outcome].encode() == expected_latency[outcome].encode()
    assert len(recorder.timeline) == len(expected_slots)
    for index, interval in enumerate(recorder.timeline):
        assert interval.start == index * 0.5
        assert {k: v for k, v in interval.counts.items() if v} == expected_slots[index]
        assert interval.latency.count == sum(expected_slots[index].values())


def test_appending_to_pending_as_the_closed_loop_does_equals_record() -> None:
    """The closed loop appends status keys straight to `pending` and calls `flush_if_full`
    once per round: the recorder then holds what `record` of each response would, and the
    buffer never grows past FLUSH_EVERY plus one round."""
    direct, appended = RunRecorder(started=0.0), RunRecorder(started=0.0)
    statuses = (200, 503, 429, 500, 404, 200, 302)
    rounds, per_round = 3 * FLUSH_EVERY // 64, 64
    for n in range(rounds * per_round):
        status, latency, done = statuses[n % len(statuses)], (n % 89) / 1000, n * 0.0004
        direct.record(classify(status), latency, done, status)
        pending = appended.pending
        pending.keys.append(status)
        pending.latencies.append(latency)
        pending.times.append(done)
        if n % per_round == per_round - 1:
            appended.flush_if_full()
            assert len(appended.pending.times) < FLUSH_EVERY
    assert appended.status_codes == direct.status_codes
    for outcome in OUTCOMES:
        assert appended.latency[outcome].encode() == direct.latency[outcome].encode()
    assert [i.counts for i in appended.timeline] == [i.counts for i in direct.timeline]


def test_rejections_are_also_timed_from_their_actual_send() -> None:
    """An open loop's rejections get a histogram of their own from the actual send, so
    admission control's speed is read without the generator's lag; other outcomes stay out."""
    recorder = RunRecorder(started=0.0)
    recorder.record("rejected", 0.030, now=0.1, status=503, uncorrected=0.001)
    recorder.record("rejected", 0.002, now=0.2, status=429, uncorrected=0.002)
    recorder.record("success", 0.050, now=0.3, status=200, uncorrected=0.040)
    recorder.record("rejected", 0.001, now=0.4, status=503)  # closed loop: no intended time
    assert recorder.uncorrected.count == 3
    assert recorder.uncorrected_rejections.count == 2
    assert recorder.uncorrected_rejections.summary_ms()["max"] < 2.1


def test_outcomes_are_the_keys_of_outcome_counts() -> None:
    """OUTCOMES and OutcomeCounts name the same outcomes in the same order."""
    assert list(OUTCOMES) == list(OutcomeCounts.__annotations__)
    counts = outcome_counts(dict.fromkeys(OUTCOMES, 3))
    assert list(counts) == list(OUTCOMES)
    assert set(counts.values()) == {3}


def test_summary_has_the_shape_of_run_summary() -> None:
    """A recorder's summary passes a runtime check against RunSummary, nested shapes included."""
    summary = recorded().summary(1.0)
    assert msgspec.convert(summary, RunSummary) == summary
    outcomes = summary["outcomes"]
    assert (outcomes["success"], outcomes["rejected"], outcomes["timeout"]) == (1, 1, 1)
    assert summary["total_requests"] == 3
    assert summary["by_priority"] is not None
    assert summary["by_priority"]["batch"]["rejection_rate_percent"] == 100.0
    assert [point["completed"] for point in summary["timeline"]] == [2, 1]


def test_the_published_schema_and_the_type_name_the_same_fields() -> None:
    """report/schema.json describes every LoadTestResult field and no other."""
    fields = set(LoadTestResult.__annotations__)
    schema = schema_fields()
    assert set(schema["properties"]) == fields
    assert set(schema["required"]) <= fields
