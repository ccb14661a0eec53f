"""Driving a real `carebench serve` for the overload and soak parts: a pattern's capacity,
load runs through the load generator, and the server's process sampled while they go.

The server is started by the test (`ServerProcess`, so its pid is known to psutil) and driven
as a `--target` through `run_plan`, the load generator's programmatic entry: the same engine,
open-loop schedule and results as `carebench loadtest`.
"""

from __future__ import annotations

import math
import statistics
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType

import msgspec
import psutil
from prometheus_client.parser import text_string_to_metric_families

from carebench.backends.simulator import SimulatorConfig
from carebench.loadgen.config import LoadConfig
from carebench.loadgen.results import LoadTestResult
from carebench.loadgen.runner import RunPlan, run_plan
from carebench.metrics.document import MetricsDocument
from carebench.patterns.base import PATTERNS, pattern_class

MIB = 1024 * 1024
#: How long a capacity measurement sends, and the start of a run left out of its steady
#: window: the pipeline filling (one 0.5 s slot of the result's timeline).
CAPACITY_SECONDS = 1.5
RAMP_SECONDS = 0.5
#: Offered load that measures a pattern's capacity, as a multiple of the database's peak:
#: above anything a pattern can pass, so a bounded one is always full (a freed slot waits
#: ~1/(3 x peak) for its next arrival: ~1.5 % of a query at 80-120 ms), with few refusals to
#: answer. A closed loop of clients re-sending refusals at once fills a pattern too, but makes
#: ~10,000 refusals a second that both processes pay for in CPU.
CAPACITY_OFFERED = 3.0


def bounded_patterns() -> list[str]:
    """Every registered pattern that bounds what it admits (all but naive today)."""
    return [name for name in PATTERNS.names() if pattern_class(name).bounded]


def unbounded_patterns() -> list[str]:
    """Every registered pattern that admits everything (naive today)."""
    return [name for name in PATTERNS.names() if not pattern_class(name).bounded]


def database_args(min_latency: float, max_latency: float) -> list[str]:
    """`carebench serve` flags for a simulated database of that latency that never fails."""
    return [
        "--error-rate", "0",
        "--min-latency", f"{min_latency * 1000:g}ms",
        "--max-latency", f"{max_latency * 1000:g}ms",
    ]  # fmt: skip


def database_peak_per_second(min_latency: float, max_latency: float) -> float:
    """Queries per second the simulated database (default capacity model) gives at its best
    concurrency, in expectation: N / (mean latency x slowdown(N)), N up to its pool size."""
    database = SimulatorConfig(min_latency=min_latency, max_latency=max_latency).resolved()
    mean = (min_latency + max_latency) / 2
    return max(n / (mean * database.slowdown(n)) for n in range(1, database.pool_size + 1))


def drive(url: str, pattern: str, load: LoadConfig) -> LoadTestResult:
    """One load run against the server at `url` (the load generator in this process)."""
    results = run_plan(RunPlan([pattern], load, mode="target", target=url))
    assert len(results) == 1 and not results[0]["interrupted"]
    return results[0]


def measure_capacity(url: str, pattern: str, database_peak: float) -> float:
    """Successful responses per second the pattern gives with its bound kept full: the steady
    window of an open loop at CAPACITY_OFFERED x the database's peak."""
    rate = round(CAPACITY_OFFERED * database_peak)
    load = LoadConfig(concurrency=500, rate=rate, duration=CAPACITY_SECONDS)
    capacity = steady_goodput(drive(url, pattern, load), RAMP_SECONDS, CAPACITY_SECONDS)
    assert capacity > 0, f"{pattern}: no successful response while measuring capacity"
    return capacity


def steady_goodput(result: LoadTestResult, start: float, end: float) -> float:
    """Successes per second completed between `start` and `end` seconds into a run (on its
    timeline's slots): without the pipeline filling at the start or the backlog draining
    after the last send, which differ between patterns and loops."""
    timeline = result["timeline"]
    assert len(timeline) >= 2, "a run too short for a steady window"
    width = timeline[1]["t"] - timeline[0]["t"]
    steady = [
        point
        for point in timeline
        if point["t"] >= start - 1e-9 and point["t"] + width <= end + 1e-9
    ]
    assert steady, f"no timeline slot between {start} s and {end} s"
    return sum(point["success"] for point in steady) / (width * len(steady))


def metrics(url: str) -> MetricsDocument:
    """The server's JSON /metrics document."""
    with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
        return msgspec.json.decode(response.read(), type=MetricsDocument)


def latency_buckets(url: str, outcome: str) -> dict[float, float]:
    """The server's cumulative latency buckets of one outcome: upper bound (s) -> requests."""
    with urllib.request.urlopen(url + "/metrics?format=prometheus", timeout=5) as response:
        text = response.read().decode()
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "carebench_request_duration_seconds":
            continue
        for sample in family.samples:
            if sample.name.endswith("_bucket") and sample.labels["outcome"] == outcome:
                buckets[float(sample.labels["le"])] = sample.value
    assert buckets, f"no carebench_request_duration_seconds buckets for {outcome!r}"
    return buckets


@dataclass(frozen=True, slots=True)
class ProcessSample:
    """The server process at one moment (`t`: seconds since sampling began)."""

    t: float
    rss: int
    fds: int
    threads: int
    #: The event loop's unfinished tasks, from /metrics (None when not read).
    tasks: int | None = None


@dataclass(slots=True)
class ProcessSampler:
    """Samples a process with psutil every `interval` seconds from a thread, until closed.

    With `tasks` (a callable reading the server's asyncio task count), each sample also holds
    that count. The first sample is taken on entry, the last on exit.
    """

    pid: int
    interval: float
    tasks: Callable[[], int] | None = None
    samples: list[ProcessSample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _started: float = 0.0

    def __enter__(self) -> ProcessSampler:
        self._started = time.monotonic()
        self.sample()
        self._thread = threading.Thread(target=self._run, name="process-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()
        if kind is None:
            self.sample()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        process = psutil.Process(self.pid)
        with process.oneshot():
            rss, fds, threads = process.memory_info().rss, process.num_fds(), process.num_threads()
        tasks = self.tasks() if self.tasks is not None else None
        self.samples.append(
            ProcessSample(time.monotonic() - self._started, rss, fds, threads, tasks)
        )

    def between(self, start: float, end: float = math.inf) -> list[ProcessSample]:
        """The samples taken from `start` to `end` seconds after sampling began."""
        return [sample for sample in self.samples if start <= sample.t <= end]


def thirds(values: Sequence[float]) -> tuple[float, float]:
    """Medians of the first and the last third of `values` (at least 3 needed)."""
    assert len(values) >= 3, f"too few samples to compare thirds: {len(values)}"
    third = len(values) // 3
    return statistics.median(values[:third]), statistics.median(values[-third:])
