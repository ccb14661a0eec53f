"""What each Locust worker measured, sent to the master, and the master's exact merge of them.

A worker records its requests in a RunRecorder, as `carebench loadtest` does, and at the end
sends the recorder's exact state (`RecorderState`, as a `loadtest --generators` process sends
it: the HdrHistogram slots and sums of every outcome, status codes, timeline slots, priority
classes). The master rebuilds each recorder and merges them (`RunRecorder.merge`), so the
merged percentiles are those of every request of the run, never an average of the workers'
percentiles, and writes one LoadTestResult: `carebench report` reads it as it reads
`carebench loadtest --output`. Nothing here imports locust or gevent.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import msgspec

from carebench import __version__
from carebench.loadgen.config import LoadConfig
from carebench.loadgen.machine import describe_machine
from carebench.loadgen.results import (
    SCHEMA_VERSION,
    LoadTestResult,
    Outcome,
    RunConfigReport,
    RunRecorder,
    classify,
)
from carebench.loadgen.sampler import ServerSample, sample_from_metrics
from carebench.loadgen.wire import RecorderState, recorder_from_state, recorder_state
from carebench.metrics.document import MetricsDocument
from carebench.report.documents import read_results
from carebench.report.export import write_outputs

#: Width (seconds) of a timeline slot, as in `carebench loadtest`.
TIMELINE_INTERVAL = 0.5


class WorkerReport(msgspec.Struct, frozen=True):
    """Everything one worker measured."""

    #: Locust's id of the worker (host name and a random suffix).
    worker: str
    #: Wall-clock time (Unix seconds) at which its timeline starts: the workers' own
    #: perf_counter clocks are not comparable across machines.
    started_unix: float
    recorder: RecorderState


class ReportError(ValueError):
    """A worker's message that is not a WorkerReport, or one that cannot be merged."""


def worker_report(recorder: RunRecorder, worker: str, started_unix: float) -> WorkerReport:
    """`recorder`'s state, to send to the master."""
    return WorkerReport(worker, started_unix, recorder_state(recorder))


def encode_report(report: WorkerReport) -> bytes:
    """The report as JSON (Locust's messages carry it as text)."""
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
        #: Each worker's recorder, rebuilt and moved onto the master's timeline.
        self._parts: dict[str, RunRecorder] = {}
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
        """Keep `report` (a worker that reports again replaces its earlier report);
        ReportError, keeping nothing, if it cannot be merged."""
        if report.recorder.interval != self.run.interval:
            raise ReportError(
                f"worker {report.worker} reports {report.recorder.interval:g} s timeline "
                f"slots; the master merges {self.run.interval:g} s ones (mixed versions?)"
            )
        try:
            part = recorder_from_state(self._aligned(report))
        except ValueError as error:
            raise ReportError(f"worker {report.worker}: {error}") from None
        self.reports[report.worker] = report
        self._parts[report.worker] = part

    def _aligned(self, report: WorkerReport) -> RecorderState:
        """The worker's state on the master's clock: its timeline slots moved by the
        difference of the two starts, to the nearest slot (each machine has its own clock)."""
        interval = self.run.interval
        slots = max(round((report.started_unix - self.run.started_unix) / interval), 0)
        timeline = [
            msgspec.structs.replace(slot, start=slot.start + slots * interval)
            for slot in report.recorder.timeline
        ]
        started = self.run.started_unix
        return msgspec.structs.replace(report.recorder, started=started, timeline=timeline)

    def missing(self, workers: Iterable[str]) -> list[str]:
        """Those of `workers` that have not reported."""
        return sorted(set(workers) - self.reports.keys())

    def recorder(self) -> RunRecorder:
        """A RunRecorder holding every request of every report."""
        total = RunRecorder(self.run.started_unix, self.run.interval)
        for part in self._parts.values():
            total.merge(part)
        return total

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
