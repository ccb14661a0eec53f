"""The group's /metrics from several processes' states: exact sums, worst states, per process."""

from __future__ import annotations

import re
from typing import Any

import pytest
from prometheus_client import generate_latest

from carebench.metrics.processes import GroupTotals, ProcessState, add_up
from carebench.metrics.requests import RequestMetrics


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def metrics_with(latencies: list[float], status: int = 200, uptime: float = 10.0) -> RequestMetrics:
    clock = Clock()
    metrics = RequestMetrics("workerpool", uptime_source=clock)
    for seconds in latencies:
        metrics.record("success" if status == 200 else "rejected", seconds, status)
    clock.now = uptime
    return metrics


def state(pid: int, metrics: RequestMetrics, **pattern: Any) -> ProcessState:
    pattern_state: Any = {
        "name": "workerpool", "in_flight": 1, "queued": 2, "queue_capacity": 100, "workers": 20,
        "workers_busy": 1, "object_pool": None, **pattern,
    }  # fmt: skip
    backend: Any = {"backend": "simulator", "total_queries": 5, "total_errors": 1}
    health: Any = {"status": "healthy", "backend": "simulator", "total_queries": 5,
                   "total_errors": 1}  # fmt: skip
    process: Any = {"rss_bytes": 1000, "peak_rss_bytes": 2000, "gc_collections": [3, 2, 1],
                    "asyncio_tasks": 4}  # fmt: skip
    return {
        "pid": pid,
        "requests": metrics.counts(),
        "pattern_state": pattern_state,
        "backend": backend,
        "backend_health": health,
        "process": process,
        "cpu_seconds": 1.5,
    }


def test_integers_lists_and_mappings_add_up() -> None:
    """Counts, capacities and limits add (capacity is per process); so do lists and mappings."""
    values = [{"queued": 1, "by": {"critical": 2}, "gc": [1, 2]},
              {"queued": 3, "by": {"critical": 5}, "gc": [10, 20]}]  # fmt: skip
    assert add_up(values) == {"queued": 4, "by": {"critical": 7}, "gc": [11, 22]}


def test_non_additive_numbers_are_the_mean_and_other_disagreements_null() -> None:
    """Rate limits add; a min RTT or a breaker's threshold does not (the mean when processes
    differ, the value when they agree); differing texts and switches are None."""
    assert add_up([50.0, 25.0], "rate_limit_per_second") == 75.0
    assert add_up([1.5, 2.5], "min_rtt_ms") == 2.0
    assert add_up([1.5, 1.5], "min_rtt_ms") == 1.5
    assert add_up([5, 5], "threshold") == 5
    assert add_up([1, 2], "consecutive_failures") == 1.5
    assert add_up([None, 2.0], "min_rtt_ms") is None
    assert add_up(["aimd", "aimd"], "algorithm") == "aimd"
    assert add_up(["aimd", "vegas"], "algorithm") is None
    assert add_up([True, False], "congested") is None


def test_states_show_the_worst_process() -> None:
    """One open circuit or one unreachable backend is what the totals show."""
    assert add_up(["closed", "open", "half_open"], "state") == "open"
    assert add_up(["healthy", "degraded"], "status") == "degraded"
    assert add_up(["healthy", "down", "degraded"], "status") == "down"


def test_a_key_missing_in_one_process_is_left_out() -> None:
    """Only keys every process has are added up."""
    assert add_up([{"a": 1, "b": 2}, {"a": 3}]) == {"a": 4}


def test_latency_adds_exactly_not_as_an_average_of_percentiles() -> None:
    """The group's percentiles are those of all requests recorded in one recorder."""
    fast = [0.001 * (i % 7 + 1) for i in range(900)]
    slow = [0.2 + 0.01 * (i % 5) for i in range(100)]
    together = metrics_with(fast + slow).snapshot()
    totals = GroupTotals([state(1, metrics_with(fast)), state(2, metrics_with(slow))])
    added = totals.requests.snapshot()
    assert added["latency_ms"] == together["latency_ms"]
    assert added["latency_histogram"] == together["latency_histogram"]
    assert added["total_requests"] == 1000


def test_uptime_is_the_longest_and_status_codes_add() -> None:
    """Requests per second divide the total by the longest uptime; status codes add up."""
    totals = GroupTotals(
        [
            state(1, metrics_with([0.01] * 30, uptime=10.0)),
            state(2, metrics_with([0.01] * 10, status=503, uptime=5.0)),
        ]
    )
    snapshot = totals.requests.snapshot()
    assert snapshot["duration_seconds"] == 10.0
    assert snapshot["requests_per_second"] == 4.0
    assert snapshot["status_codes"] == {"200": 30, "503": 10}
    assert snapshot["rejected_requests"] == 10


def test_document_has_totals_and_each_process() -> None:
    """The JSON view: single-process fields as totals, then every process by pid."""
    totals = GroupTotals(
        [state(7, metrics_with([0.01] * 3)), state(5, metrics_with([0.02] * 2))],
        unreachable=[9],
        restarted=1,
    )
    document = totals.document()
    assert document["total_requests"] == 5
    assert document["process_count"] == 2
    assert [entry["pid"] for entry in document["processes"]] == [5, 7]
    assert [entry["total_requests"] for entry in document["processes"]] == [2, 3]
    assert document["pattern_state"]["workers"] == 40
    assert document["pattern_state"]["name"] == "workerpool"
    assert document["backend"]["total_queries"] == 10
    assert document["process"]["gc_collections"] == [6, 4, 2]
    assert document["unreachable_processes"] == [9]
    assert document["processes_restarted"] == 1


def test_prometheus_counts_every_process() -> None:
    """The exposition's request counters, process CPU and memory are the group's."""
    totals = GroupTotals([state(1, metrics_with([0.01] * 3)), state(2, metrics_with([0.5] * 4))])
    text = generate_latest(totals.registry()).decode()
    counted = re.findall(r'^carebench_requests_total\{outcome="success".*\} (\S+)$', text, re.M)
    assert counted == ["7.0"]
    assert 'carebench_request_duration_seconds_bucket{le="+Inf",outcome="success"' in text
    assert "process_cpu_seconds_total 3.0" in text
    assert "process_resident_memory_bytes 2000.0" in text
    assert "carebench_processes 2.0" in text
    assert "carebench_processes_unreachable 0.0" in text
    assert "carebench_process_restarts_total 0.0" in text
    assert 'carebench_workers{pattern="workerpool"} 40.0' in text


def test_no_state_is_an_error() -> None:
    """A scrape always holds at least the answering process."""
    with pytest.raises(ValueError, match="answering process"):
        GroupTotals([])


def audit(written: int, state: str = "ok", error: str | None = None) -> Any:
    return {"state": state, "sink": "file", "format": "jsonl", "written": written, "refused": 1,
            "lost": 0, "pending": 2, "capacity": 100, "error": error}  # fmt: skip


def test_audit_trails_add_up_and_a_failed_sink_shows() -> None:
    """With --audit-log, JSON and Prometheus hold every process's trail; one failed sink is
    the group's state, and each process keeps its own error."""
    first = state(1, metrics_with([0.01]))
    second = state(2, metrics_with([0.01]))
    first["audit"] = audit(10)
    second["audit"] = audit(5, "failed", "disk full")
    totals = GroupTotals([first, second])
    document = totals.document()
    assert document["audit"]["written"] == 15 and document["audit"]["capacity"] == 200
    assert document["audit"]["state"] == "failed"
    assert document["processes"][1]["audit"]["error"] == "disk full"
    text = generate_latest(totals.registry()).decode()
    assert "carebench_audit_records_written_total 15.0" in text
    assert 'carebench_audit_sink_state{state="failed"} 1.0' in text


def test_no_audit_without_every_process_having_one() -> None:
    """Without --audit-log there is no audit field and no audit family."""
    totals = GroupTotals([state(1, metrics_with([0.01]))])
    assert "audit" not in totals.document()
    assert "carebench_audit" not in generate_latest(totals.registry()).decode()
