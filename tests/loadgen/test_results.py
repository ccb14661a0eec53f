"""The result shapes: what RunRecorder produces matches its TypedDicts and the published schema."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import msgspec

from carebench.loadgen.results import (
    OUTCOMES,
    LoadTestResult,
    OutcomeCounts,
    RunRecorder,
    RunSummary,
    outcome_counts,
)


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
