"""What each Locust worker measured, sent to the master, and the master's exact merge of them.

A worker records its requests in a RunRecorder, as `carebench loadtest` does, and at the end
sends the recorder's whole state: the HdrHistogram counts of every outcome, status codes,
timeline slots and priority classes (`WorkerReport`). The master adds them up slot by slot,
so the merged percentiles are those of every request of the run, never an average of the
workers' percentiles, and writes one LoadTestResult: `carebench report` reads it as it reads
`carebench loadtest --output`. Nothing here imports locust or gevent.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

import msgspec

from carebench import __version__
from carebench.loadgen.config import LoadConfig
from carebench.loadgen.machine import describe_machine
from carebench.loadgen.results import (
    OUTCOMES,
    SCHEMA_VERSION,
    ClassStats,
    Interval,
    LoadTestResult,
    Outcome,
    OutcomeCounts,
    RunConfigReport,
    RunRecorder,
    classify,
    outcome_counts,
)
from carebench.loadgen.sampler import ServerSample, sample_from_metrics
from carebench.metrics.document import MetricsDocument
from carebench.metrics.latency import LatencyRecorder, LatencyState
from carebench.report.documents import read_results
from carebench.report.export import write_outputs

#: Width (seconds) of a timeline slot, as in `carebench loadtest`.
TIMELINE_INTERVAL = 0.5


class IntervalState(TypedDict):
    """One timeline slot of a worker: what completed in it, and their latency."""

    counts: OutcomeCounts
    latency: LatencyState


class ClassState(TypedDict):
    """One priority class of a worker: its outcomes and the latency of its successes."""

    counts: OutcomeCounts
    success_latency: LatencyState


class WorkerReport(TypedDict):
    """Everything one worker measured: its RunRecorder, as JSON-safe values."""

    #: Locust's id of the worker (host name and a random suffix).
    worker: str
    #: Wall-clock time (Unix seconds) at which its timeline starts.
    started_unix: float
    interval: float
    latency: dict[Outcome, LatencyState]
    #: HTTP status (as a string: a JSON key) -> responses.
    status_codes: dict[str, int]
    timeline: list[IntervalState]
    by_priority: dict[str, ClassState]


class ReportError(ValueError):
    """A worker's message that is not a WorkerReport."""


def worker_report(recorder: RunRecorder, worker: str, started_unix: float) -> WorkerReport:
    """`recorder`'s state, to send to the master."""
    return {
        "worker": worker,
        "started_unix": started_unix,
        "interval": recorder.interval,
        "latency": {outcome: recorder.latency[outcome].to_state() for outcome in OUTCOMES},
        "status_codes": {str(code): n for code, n in sorted(recorder.status_codes.items())},
        "timeline": [
            {"counts": outcome_counts(slot.counts), "latency": slot.latency.to_state()}
            for slot in recorder.timeline
        ],
        "by_priority": {
            name: {
                "counts": outcome_counts(stats.counts),
                "success_latency": stats.success_latency.to_state(),
            }
            for name, stats in sorted(recorder.by_priority.items())
        },
    }


def encode_report(report: WorkerReport) -> bytes:
    """The report as JSON bytes (Locust's messages carry them as they are)."""
    return msgspec.json.encode(report)


def decode_report(data: bytes | str) -> WorkerReport:
    """A report sent by `encode_report`; ReportError if `data` is not one."""
    try:
        return msgspec.json.decode(data, type=WorkerReport)
    except msgspec.DecodeError as error:  # ValidationError is one
        raise ReportError(f"not a carebench worker report: {error}") from None


def outcome_of(status: int, timed_out: bool) -> Outcome:
    """How a Locust request ended, as `carebench loadtest` classifies it: by its HTTP status
    when it got one, otherwise a timeout or a connection error."""
    if status > 0:
        return classify(status)
    return "timeout" if timed_out else "connection_error"


def retry_after_seconds(header: str | None) -> float:
    """A Retry-After given in seconds (carebench sends no HTTP-date form): 0 if absent."""
    try:
        return max(0.0, float(header or 0))
    except ValueError:
        return 0.0


@dataclass(slots=True)
class LocustRun:
    """What the master knows of the run it merges: the load it applied, and its clock."""

    load: LoadConfig
    #: Locust's --host: the carebench server every user drives.
    target: str
    #: Wall-clock time (Unix seconds) at which the master started the test.
    started_unix: float
    interval: float = TIMELINE_INTERVAL


class RunMerge:
    """The master's side: the report of each worker, merged into one result on demand."""

    def __init__(self, run: LocustRun) -> None:
        self.run = run
        self.reports: dict[str, WorkerReport] = {}
        #: The server's state through the run, as `loadtest` samples it (from the master).
        self.samples: list[ServerSample] = []

    def add_sample(self, metrics: MetricsDocument, at_unix: float) -> bool:
        """Keep the state in a /metrics document read at `at_unix`; False (and nothing
        kept) when it is not a carebench server's document."""
        try:
            state = sample_from_metrics(metrics)
        except (KeyError, TypeError):
            return False
        self.samples.append({"t": round(at_unix - self.run.started_unix, 3), **state})
        return True

    def add(self, report: WorkerReport) -> None:
        """Keep `report` (a worker that reports again replaces its earlier report)."""
        if report["interval"] != self.run.interval:
            raise ReportError(
                f"worker {report['worker']} reports {report['interval']:g} s timeline slots; "
                f"the master merges {self.run.interval:g} s ones (mixed carebench versions?)"
            )
        try:  # a report that cannot be merged is refused now, not when the run is written
            _add_report(RunRecorder(0.0, self.run.interval), report, 0)
        except ValueError as error:
            raise ReportError(f"worker {report['worker']}: {error}") from None
        self.reports[report["worker"]] = report

    def missing(self, workers: Iterable[str]) -> list[str]:
        """Those of `workers` that have not reported."""
        return sorted(set(workers) - self.reports.keys())

    def recorder(self) -> RunRecorder:
        """A RunRecorder holding every request of every report, timelines aligned on the
        master's start (to the nearest slot: each worker's clock is its own)."""
        total = RunRecorder(self.run.started_unix, self.run.interval)
        for report in self.reports.values():
            _add_report(total, report, self._slot_offset(report))
        return total

    def _slot_offset(self, report: WorkerReport) -> int:
        shift = (report["started_unix"] - self.run.started_unix) / self.run.interval
        return max(round(shift), 0)

    def result(
        self, duration: float, server_metrics: dict[str, object] | None, interrupted: bool
    ) -> LoadTestResult:
        """The merged run as `carebench loadtest --target` describes one (a closed loop)."""
        result: LoadTestResult = {
            "schema_version": SCHEMA_VERSION,
            "carebench_version": __version__,
            "pattern": str((server_metrics or {}).get("pattern", "target")),
            "mode": "target",
            "loop": "closed",
            "target": self.run.target,
            # RunSummary has exactly the keys summary() writes (see loadgen/runner.py).
            **self.recorder().summary(duration),  # type: ignore[typeddict-item]
            "open_loop": None,
            "server_samples": list(self.samples),
            "interrupted": interrupted,
            "config": self._config_report(),
            "server_metrics": dict(server_metrics) if server_metrics is not None else None,
            "machine": describe_machine(),
        }
        return result

    def _config_report(self) -> RunConfigReport:
        load = self.run.load
        return {
            "requests": None,
            "concurrency": load.concurrency,
            "rate": None,
            "duration": load.duration,
            "stages": None,
            "arrivals": None,
            "timeout": load.timeout,
            "warmup": 0.0,
            "ids": load.ids,
            "priorities": load.priorities,
            "honor_retry_after": load.honor_retry_after,
            "seed": None,
            "server_args": [],
        }


def _add_report(total: RunRecorder, report: WorkerReport, offset: int) -> None:
    """Add one worker's counts to `total`, its timeline slots moved `offset` slots later."""
    for outcome, state in report["latency"].items():
        total.latency[outcome].merge(LatencyRecorder.from_state(state))
    codes = total.status_codes
    for code, count in report["status_codes"].items():
        codes[int(code)] = codes.get(int(code), 0) + count
    timeline = total.timeline
    for index, slot_state in enumerate(report["timeline"], start=offset):
        while len(timeline) <= index:
            timeline.append(Interval(len(timeline) * total.interval))
        slot = timeline[index]
        slot.latency.merge(LatencyRecorder.from_state(slot_state["latency"]))
        _add_counts(slot.counts, slot_state["counts"])
    for name, class_state in report["by_priority"].items():
        stats = total.by_priority.setdefault(name, ClassStats())
        stats.success_latency.merge(LatencyRecorder.from_state(class_state["success_latency"]))
        _add_counts(stats.counts, class_state["counts"])


def _add_counts(counts: dict[Outcome, int], more: OutcomeCounts) -> None:
    for outcome in OUTCOMES:
        counts[outcome] += more[outcome]


def earlier_results(path: str, append: bool) -> list[LoadTestResult]:
    """The results `path` holds when appending to it (none when it does not exist yet);
    ConfigError, naming the file, when it holds something else."""
    if not append or not Path(path).exists():
        return []
    return read_results(path)


def write_results(path: str, result: LoadTestResult, append: bool) -> int:
    """Write `result` to `path` as `loadtest --output` writes results, after those already
    there when appending; how many results the file holds."""
    results = [*earlier_results(path, append), result]
    write_outputs(results, json_path=path)
    return len(results)
