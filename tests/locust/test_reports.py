"""Worker reports and the master's merge: exact, aligned, validated; no locust imported."""

from __future__ import annotations

import json
import random
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from carebench.errors import ConfigError
from carebench.loadgen.config import LoadConfig
from carebench.loadgen.results import OUTCOMES, Outcome, RunRecorder, classify
from carebench.locust.reports import (
    LocustRun,
    ReportError,
    RunMerge,
    decode_report,
    encode_report,
    outcome_of,
    retry_after_seconds,
    worker_report,
    write_results,
)
from carebench.report.documents import read_results

STATUSES = (200, 200, 200, 200, 503, 429, 500, 404)
PRIORITIES = ("critical", "standard", "batch", None)


def feed(recorders: list[RunRecorder], seed: int, n: int = 2000) -> None:
    """The same random requests into every recorder of `recorders`."""
    rng = random.Random(seed)
    for _ in range(n):
        status = rng.choice(STATUSES) if rng.random() > 0.02 else 0
        failures: list[Outcome] = ["timeout", "connection_error"]
        outcome = classify(status) if status else rng.choice(failures)
        latency = rng.lognormvariate(-3, 1)
        now = rng.uniform(0.0, 3.0)
        priority = rng.choice(PRIORITIES)
        for recorder in recorders:
            recorder.record(outcome, latency, now, status, priority=priority)


def run(started_unix: float = 1000.0) -> LocustRun:
    return LocustRun(LoadConfig(concurrency=8, duration=3.0), "http://127.0.0.1:1", started_unix)


def test_merged_workers_equal_one_recorder_of_every_request() -> None:
    """Two workers' reports merge into exactly the summary one recorder of all requests
    gives: same percentiles, spectrum, histogram, status codes, timeline and classes."""
    everything = RunRecorder(0.0)
    first, second = RunRecorder(0.0), RunRecorder(0.0)
    feed([everything, first], seed=1)
    feed([everything, second], seed=2, n=1500)
    merge = RunMerge(run())
    for name, recorder in (("a", first), ("b", second)):
        merge.add(decode_report(encode_report(worker_report(recorder, name, 1000.0))))
    assert merge.recorder().summary(3.0) == everything.summary(3.0)


def test_report_survives_json_and_validates() -> None:
    """A report decodes to what was encoded; anything else is a ReportError."""
    recorder = RunRecorder(0.0)
    feed([recorder], seed=3, n=50)
    report = worker_report(recorder, "w1", 5.0)
    assert decode_report(encode_report(report)) == report
    with pytest.raises(ReportError):
        decode_report(b"{}")
    with pytest.raises(ReportError):
        decode_report("not json")


def test_a_late_worker_lands_in_later_timeline_slots() -> None:
    """A worker whose clock started 1 s after the master's fills slots 2 and up."""
    recorder = RunRecorder(0.0)
    recorder.record("success", 0.01, 0.1, 200)
    merge = RunMerge(run(started_unix=100.0))
    merge.add(worker_report(recorder, "late", 101.0))
    timeline = merge.recorder().timeline
    assert [sum(slot.counts.values()) for slot in timeline] == [0, 0, 1]
    assert [slot.start for slot in timeline] == [0.0, 0.5, 1.0]


def test_a_worker_reporting_again_replaces_its_report() -> None:
    """Reports are kept per worker, the latest one counting; missing() names the silent."""
    one, two = RunRecorder(0.0), RunRecorder(0.0)
    feed([one], seed=4, n=10)
    feed([two], seed=5, n=30)
    merge = RunMerge(run())
    merge.add(worker_report(one, "w", 1000.0))
    merge.add(worker_report(two, "w", 1000.0))
    assert merge.recorder().total == 30
    assert merge.missing(["w", "x", "y"]) == ["x", "y"]


def test_reports_that_cannot_merge_are_refused() -> None:
    """Another slot width, or a histogram slot out of range, is a ReportError at once."""
    merge = RunMerge(run())
    report = worker_report(RunRecorder(0.0, interval=1.0), "odd", 1000.0)
    with pytest.raises(ReportError, match="timeline slots"):
        merge.add(report)
    broken = worker_report(RunRecorder(0.0), "broken", 1000.0)
    broken.recorder.latency["success"]["indices"] = [10**9]
    broken.recorder.latency["success"]["counts"] = [1]
    with pytest.raises(ReportError, match="broken"):
        merge.add(broken)
    unknown = worker_report(RunRecorder(0.0), "unknown", 1000.0)
    unknown.recorder.latency["lost"] = unknown.recorder.latency.pop("success")
    with pytest.raises(ReportError, match="unknown outcomes"):
        merge.add(unknown)
    assert merge.reports == {}


def schema() -> dict[str, Any]:
    text = resources.files("carebench.report").joinpath("schema.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def test_result_is_a_loadtest_result_that_report_reads(tmp_path: Path) -> None:
    """The merged result validates against the published schema and `carebench report`'s
    reader, and names the server's pattern and the load applied."""
    recorder = RunRecorder(0.0)
    feed([recorder], seed=6, n=300)
    merge = RunMerge(run())
    merge.add(worker_report(recorder, "w", 1000.0))
    result = merge.result(3.0, {"pattern": "shedder", "total_requests": 300}, False)
    jsonschema.validate([result], schema())
    path = tmp_path / "locust.json"
    path.write_text(json.dumps([result]), encoding="utf-8")
    (read,) = read_results(path)
    assert read["pattern"] == "shedder"
    assert read["mode"] == "target" and read["loop"] == "closed"
    assert read["total_requests"] == 300 == sum(read["outcomes"][outcome] for outcome in OUTCOMES)
    assert read["config"]["concurrency"] == 8 and read["config"]["duration"] == 3.0
    assert read["interrupted"] is False


def test_result_without_server_metrics_is_labelled_target() -> None:
    """No /metrics document: the pattern reads `target` and the run can be interrupted."""
    result = RunMerge(run()).result(1.0, None, interrupted=True)
    assert (result["pattern"], result["interrupted"], result["total_requests"]) == (
        "target",
        True,
        0,
    )


def test_runs_append_into_one_file_that_report_compares(tmp_path: Path) -> None:
    """--carebench-append adds a run after those already saved; without it the file is
    replaced; a file that is not results is refused, naming it, and left alone."""
    path = str(tmp_path / "runs.json")
    merge = RunMerge(run())
    first = merge.result(1.0, {"pattern": "semaphore"}, False)
    second = merge.result(1.0, {"pattern": "codel"}, False)
    assert write_results(path, first, append=True) == 1
    assert write_results(path, second, append=True) == 2
    assert [r["pattern"] for r in read_results(path)] == ["semaphore", "codel"]
    assert write_results(path, second, append=False) == 1
    other = tmp_path / "other.json"
    other.write_text('{"kind": "something"}', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"other\.json"):
        write_results(str(other), first, append=True)
    assert other.read_text(encoding="utf-8") == '{"kind": "something"}'


def test_server_samples_are_kept_on_the_masters_clock() -> None:
    """A /metrics document becomes a sample `t` seconds into the run; anything that is not
    a carebench server's document is not kept."""
    merge = RunMerge(run(started_unix=50.0))
    document: Any = {
        "pattern_state": {"in_flight": 3, "queued": 1},
        "backend": {"active_queries": 2},
        "process": {"rss_bytes": 1000},
    }
    assert merge.add_sample(document, 51.25) is True
    assert merge.add_sample({"status": "ok"}, 52.0) is False  # type: ignore[typeddict-item]
    assert merge.samples == [
        {"t": 1.25, "in_flight": 3, "queued": 1, "rss_bytes": 1000, "db_active": 2}
    ]
    assert merge.result(2.0, None, False)["server_samples"] == merge.samples


@pytest.mark.parametrize(
    ("status", "timed_out", "outcome"),
    [
        (200, False, "success"),
        (503, False, "rejected"),
        (429, False, "rejected"),
        (500, False, "backend_error"),
        (404, False, "client_error"),
        (0, True, "timeout"),
        (0, False, "connection_error"),
    ],
)
def test_outcomes_follow_carebench_classification(
    status: int, timed_out: bool, outcome: str
) -> None:
    """A status is classified as loadtest does; no status is a timeout or a lost connection."""
    assert outcome_of(status, timed_out) == outcome
    assert outcome in OUTCOMES


@pytest.mark.parametrize(
    ("header", "seconds"),
    [(None, 0.0), ("", 0.0), ("2", 2.0), ("0.5", 0.5), ("-1", 0.0), ("soon", 0.0)],
)
def test_retry_after_reads_seconds(header: str | None, seconds: float) -> None:
    """Retry-After in seconds; absent, negative or unreadable is 0."""
    assert retry_after_seconds(header) == seconds


def test_nothing_here_imports_locust_or_gevent() -> None:
    """The reports and options load without Locust: its monkey-patching stays out of pytest."""
    assert "locust" not in sys.modules
    assert "gevent" not in sys.modules
