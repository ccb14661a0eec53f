"""Drive every registered pattern in-process on uvloop, the way `go test -bench` drove the
reference: N clients submitting back to back, each request encoded like an HTTP answer.

Not collected by `make test` (its testpaths is `tests`); run with `make bench`.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvloop

from carebench.backends.simulator import SimulatedBackend, SimulatorConfig
from carebench.limits.gradient2 import Gradient2Limit
from carebench.loadgen.channels import InProcessChannel
from carebench.models import PRIORITIES
from carebench.patterns.adaptive import AdaptivePattern
from carebench.patterns.base import Pattern, PatternConfig, create_pattern

CONCURRENCY_LEVELS = (10, 50, 100)

#: `zero` isolates each pattern's own cost per request; `reference` is the Go project's
#: database (50-100 ms, 5 % errors, unlimited capacity) for a Little's-law check.
BACKEND_SETTINGS = {
    "zero": SimulatorConfig(min_latency=0.0, max_latency=0.0, error_rate=0.0, profile="ideal"),
    "reference": SimulatorConfig(
        min_latency=0.050, max_latency=0.100, error_rate=0.05, profile="ideal", seed=20240601
    ),
}

#: Far beyond any deadline a benchmark run reaches: a request never times out here.
REQUEST_TIMEOUT = 30.0

#: Requests cycle through this many ids, all in the record cache after the first round.
PATIENT_IDS = tuple(f"P{number:05d}" for number in range(100))

#: Outcome statuses as the in-process channel reports them.
OK, BACKEND_ERROR, REJECTED, TOO_MANY, DEADLINE, CLIENT_GONE = 200, 500, 503, 429, 504, 499


def fair_config(concurrency: int) -> PatternConfig:
    """Settings under which no pattern rejects anything at `concurrency`, so every pattern's
    time is spent serving requests: a queue far larger than the clients, a semaphore limit
    of at least the concurrency, a token bucket that never runs dry, and a CoDel queue whose
    target wait is past any wait here (with its 5 ms default, 50 or 100 clients queueing
    for 20 workers are shed as a standing queue, so its cost would be that of refusals)."""
    return PatternConfig(
        workers=20,
        queue_size=10_000,
        limit=max(concurrency, 20),
        rate_limit=1e9,
        burst=1_000_000,
        codel_target=REQUEST_TIMEOUT,
        codel_interval=REQUEST_TIMEOUT,
    )


def admit_all_clients(pattern: Pattern, concurrency: int) -> None:
    """Give adaptive a floor of `concurrency`: its learnt limit starts at 20 and PatternConfig
    has no initial-limit setting, so at 50 or 100 clients it would measure rejections. The
    algorithm still runs on every completed request."""
    if isinstance(pattern, AdaptivePattern) and pattern.limit < concurrency:
        pattern.algorithm = Gradient2Limit(
            initial=concurrency, min_limit=concurrency, max_limit=max(200, concurrency)
        )


@dataclass(slots=True)
class BatchResult:
    """Outcomes of one batch: statuses, the most requests seen in flight at once, wall time."""

    statuses: Counter[int] = field(default_factory=Counter)
    peak_in_flight: int = 0
    elapsed: float = 0.0

    def add(self, other: BatchResult) -> None:
        self.statuses.update(other.statuses)
        self.peak_in_flight = max(self.peak_in_flight, other.peak_in_flight)
        self.elapsed += other.elapsed

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    def outcomes(self) -> dict[str, int]:
        """Counts by outcome, for extra_info."""
        statuses = self.statuses
        return {
            "ok": statuses[OK],
            "backend_errors": statuses[BACKEND_ERROR],
            "rejected": statuses[REJECTED] + statuses[TOO_MANY],
            "deadline_exceeded": statuses[DEADLINE],
            "client_gone": statuses[CLIENT_GONE],
        }


async def drive(
    channel: InProcessChannel,
    requests: int,
    concurrency: int,
    on_saturated: Callable[[int], None] | None = None,
) -> BatchResult:
    """Send `requests` from `concurrency` clients, each one back to back.

    `on_saturated(in_flight)` is scheduled once, when the last client has sent its first
    request; it receives the number still in flight when it runs.
    """
    result = BatchResult()
    remaining = requests
    in_flight = 0
    loop = asyncio.get_running_loop()

    def saturated() -> None:
        # Reads `in_flight` when it runs: requests may have finished since it was scheduled.
        if on_saturated is not None:
            on_saturated(in_flight)

    async def client(first: int) -> None:
        nonlocal remaining, in_flight
        index = first
        while remaining > 0:
            remaining -= 1
            in_flight += 1
            if in_flight > result.peak_in_flight:
                result.peak_in_flight = in_flight
                if in_flight == concurrency and on_saturated is not None:
                    loop.call_soon(saturated)
            status = await channel.fetch(PATIENT_IDS[index % len(PATIENT_IDS)])
            in_flight -= 1
            result.statuses[status] += 1
            index += concurrency

    started = time.perf_counter()
    await asyncio.gather(*(client(number) for number in range(concurrency)))
    result.elapsed = time.perf_counter() - started
    return result


class PatternHarness:
    """One pattern in front of a simulated backend, on its own uvloop event loop."""

    def __init__(self, pattern_name: str, backend_name: str, concurrency: int) -> None:
        self.pattern_name = pattern_name
        self.backend_name = backend_name
        self.concurrency = concurrency
        self.backend_config = BACKEND_SETTINGS[backend_name]
        self._runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
        try:
            self.pattern: Pattern = self._runner.run(self._start())
        except BaseException:
            self._runner.close()
            raise
        self._channel = InProcessChannel(self.pattern, dict.fromkeys(PRIORITIES, REQUEST_TIMEOUT))

    async def _start(self) -> Pattern:
        backend = SimulatedBackend(self.backend_config)
        pattern = create_pattern(self.pattern_name, backend, fair_config(self.concurrency))
        admit_all_clients(pattern, self.concurrency)
        await pattern.start()
        return pattern

    def run(self, requests: int, on_saturated: Callable[[int], None] | None = None) -> BatchResult:
        """Run one batch of `requests` to completion on the harness's loop."""
        return self._runner.run(drive(self._channel, requests, self.concurrency, on_saturated))

    def close(self) -> None:
        self._runner.run(self.pattern.shutdown(drain_timeout=5.0))
        self._runner.close()


@pytest.fixture
def make_harness() -> Iterator[Callable[[str, str, int], PatternHarness]]:
    """Builds harnesses and closes every one after the test."""
    built: list[PatternHarness] = []

    def make(pattern_name: str, backend_name: str, concurrency: int) -> PatternHarness:
        harness = PatternHarness(pattern_name, backend_name, concurrency)
        built.append(harness)
        return harness

    yield make
    for harness in built:
        harness.close()


#: A CPU probe slower than this multiple of the run's fastest marks a benchmark as noisy.
NOISY_PROBE_FACTOR = 1.25


class ProbedRounds:
    """Round times recorded next to a CPU probe, so results can be read against machine speed.

    On a shared machine a neighbour can slow a whole benchmark by half without widening its
    spread. `probe` (pedantic's untimed `setup`) times a fixed pure-Python loop just before
    each round; `record` takes the round's time. The probe slows down with the machine, so
    round time / probe time is a cost that holds still while both slow down, and the probe
    itself tells the summary which benchmarks ran on a slow machine.
    """

    WORK = 20_000

    def __init__(self, warmup_rounds: int) -> None:
        self._warmup = warmup_rounds
        self._probes: list[float] = []
        self._rounds: list[float] = []

    def probe(self) -> None:
        started = time.perf_counter()
        sum(number * number for number in range(self.WORK))
        self._probes.append(time.perf_counter() - started)

    def record(self, seconds: float) -> None:
        self._rounds.append(seconds)

    def _measured(self) -> list[tuple[float, float]]:
        """(probe, round) pairs of the measured rounds; warm-up rounds left out."""
        pairs = list(zip(self._probes, self._rounds, strict=True))
        return pairs[self._warmup :] or pairs

    @property
    def median_seconds(self) -> float:
        return statistics.median(seconds for _, seconds in self._measured())

    @property
    def probe_us(self) -> float:
        return round(statistics.median(probe for probe, _ in self._measured()) * 1e6, 1)

    def probes_per_1k(self, requests_per_round: int) -> float:
        """Median cost of 1000 requests in probe loops: comparable across runs and machines
        as long as the pattern's code and the probe slow down alike."""
        cost = statistics.median(seconds / probe for probe, seconds in self._measured())
        return round(cost * 1000 / requests_per_round, 3)


ZERO_TABLE = "zero latency: the pattern's own cost per request"
REFERENCE_TABLE = "reference latency: Little's law, min(concurrency, capacity) / mean latency"
MEMORY_TABLE = "memory: 10k requests at concurrency 100"
HOT_PATH_TABLE = "hot path: one server request's pieces, per call"

#: Columns of each summary table: (header, extra_info key, width).
SUMMARY_TABLES: dict[str, tuple[tuple[str, str, int], ...]] = {
    ZERO_TABLE: (
        ("us/req", "us_per_request", 8),
        ("req/s", "requests_per_second", 9),
        ("probes/1k", "probes_per_1k_requests", 9),
        ("blocks/req", "allocs_per_request", 10),
        ("bytes/req", "bytes_per_request", 10),
        ("peak B/req", "peak_bytes_per_request", 10),
        ("gc/1k", "gc_collections_per_1k_requests", 7),
        ("gc ms/1k", "gc_pause_ms_per_1k_requests", 9),
    ),
    REFERENCE_TABLE: (
        ("requests", "requests", 8),
        ("req/s", "requests_per_second", 9),
        ("expected", "expected_requests_per_second", 9),
        ("ratio", "littles_law_ratio", 6),
        ("errors", "backend_errors", 6),
        ("rejected", "rejected", 8),
    ),
    HOT_PATH_TABLE: (
        ("us/call", "us_per_request", 8),
        ("probes/1k", "probes_per_1k_requests", 9),
    ),
    MEMORY_TABLE: (
        ("RSS MB", "rss_before_mb", 7),
        ("after", "rss_after_mb", 7),
        ("growth kB", "rss_growth_kb", 9),
        ("peak traced kB", "peak_traced_kb", 14),
        ("peak B/req", "peak_bytes_per_request", 10),
        ("kept/1k", "retained_blocks_per_1k_requests", 8),
    ),
}


@dataclass(slots=True)
class SummaryLog:
    """Rows and verdicts printed after the benchmark tables."""

    rows: dict[str, list[tuple[str, dict[str, Any]]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    probes: dict[str, float] = field(default_factory=dict)

    def row(self, table: str, name: str, info: dict[str, Any]) -> None:
        if table not in SUMMARY_TABLES:
            raise KeyError(f"no summary table {table!r}")
        self.rows.setdefault(table, []).append((name, info))

    def note(self, text: str) -> None:
        self.notes.append(text)

    def probe(self, name: str, rounds: ProbedRounds) -> None:
        """Remember how fast the machine was while `name` ran."""
        self.probes[name] = rounds.probe_us

    def noise_report(self) -> str:
        """Which benchmarks ran while the CPU probe was well above its best in this run."""
        if not self.probes:
            return "CPU probe: no samples"
        best = min(self.probes.values())
        slow = {
            name: us / best for name, us in self.probes.items() if us > best * NOISY_PROBE_FACTOR
        }
        if not slow:
            return f"CPU probe steady: every benchmark within {NOISY_PROBE_FACTOR:g}x of its best"
        names = ", ".join(f"{name} ({factor:.2f}x)" for name, factor in slow.items())
        return (
            f"CPU probe: the machine was slower than its best (> {NOISY_PROBE_FACTOR:g}x) during "
            f"{len(slow)} benchmark(s), distrust their times or re-run: {names}"
        )


SUMMARY_KEY = pytest.StashKey[SummaryLog]()


@pytest.fixture
def summary(request: pytest.FixtureRequest) -> SummaryLog:
    """The run's summary, printed after pytest-benchmark's tables."""
    return request.config.stash.setdefault(SUMMARY_KEY, SummaryLog())


def _cell(value: Any, width: int) -> str:
    if value is None:
        return "-".rjust(width)
    if isinstance(value, float):
        magnitude = abs(value)
        decimals = 0 if magnitude >= 1000 else 1 if magnitude >= 10 else 3
        return f"{value:>{width},.{decimals}f}"
    return f"{value!s:>{width}}"


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the extra_info that pytest-benchmark's tables cannot show (its columns are fixed)."""
    log = terminalreporter.config.stash.get(SUMMARY_KEY, None)
    if log is None:
        return
    log.note(log.noise_report())
    terminalreporter.section("carebench: extra_info per benchmark")
    for title, rows in log.rows.items():
        columns = SUMMARY_TABLES[title]
        width = max(len(name) for name, _ in rows)
        header = "".join(f" {heading:>{size}}" for heading, _, size in columns)
        terminalreporter.write_line("")
        terminalreporter.write_line(title)
        terminalreporter.write_line(f"{'benchmark':<{width}}{header}")
        for name, info in rows:
            cells = "".join(" " + _cell(info.get(key), size) for _, key, size in columns)
            terminalreporter.write_line(f"{name:<{width}}{cells}")
    terminalreporter.write_line("")
    for text in log.notes:
        terminalreporter.write_line(text)
