"""Overload: every bounded pattern, open loop at 10x its capacity, keeps its goodput, refuses
the excess fast and holds its memory; the unbounded naive pattern runs the same load, and its
collapse is recorded, not hidden.

The setting. The simulated database answers in 80-120 ms and never fails (--error-rate 0),
with its realistic capacity model (a pool of 100 connections, USL contention 0.03, coherency
0.001): it passes at most ~110 queries/s (at ~31 at once) and fewer beyond. A bounded
pattern's 20 workers or permits give ~100 successful responses/s (ratelimit: its
--rate-limit, 100/s), so 10x is ~1,100 requests/s: the server and this Python generator need
~10 % of a core each for it, which they still get on a 2-core machine shared with other work.
Long queries keep the ratio steady there: a scheduling delay of a few ms is a few % of a
query, not a quarter of it (with 30-50 ms queries at 2,500/s, ratios ranged 0.5-1.3 at load
12). --db-pool-timeout 250ms makes naive's excess fail (500, pool exhausted) after 250 ms
instead of 2 s, so its run ends in time: with 2 s, thousands of its requests wait at once,
the generator runs out of connections and the run takes ~11 s.

One run per pattern, on its own server, open loop over up to 500 connections, in two stages:
1. capacity, 1.5 s at 3x the database's peak (~330/s: more than any pattern can pass, so a
   bounded one is always full, see load.CAPACITY_OFFERED); the pattern's capacity is its
   goodput from 0.5 s (the pipeline filled) to the end of the stage;
2. overload, 2 s (20 s with CAREBENCH_RELIABILITY_LONG=1) at 10x the database's peak
   (~1,100/s: 10-11x every pattern's capacity); goodput from 0.5 s into the stage to its end.
Both goodputs leave out the pipeline filling and the backlog draining after the last send,
which differ between patterns (adaptive at 10x ends with 50-70 slow queries in flight); the
whole run's goodput is a figure. psutil samples the server's RSS every 0.1 s meanwhile.

What must hold for a bounded pattern, and the margins chosen for a busy 2-core machine:
- goodput at 10x >= 90 % of capacity (measured 0.93-1.05 at load 2-3, 0.93-1.11 at load 7-9),
  and >= 75 % of the database's peak (measured 0.92-0.96; naive 0.66-0.68), since a pattern
  whose bound lets the database collapse has collapsed at 3x already. The windows hold ~100
  and ~150 successes, and where they end cuts a few queries either way: ratios measured
  0.94-1.05 (sd ~0.03) at load 2-3, so a run under a floor is measured once more on a fresh
  server and the test fails when both are (a collapse is systematic; `attempts` and the first
  attempt's ratio are figures);
- the excess is refused: at least half the requests are rejections (~85 % offered over
  capacity), and nothing fails otherwise (no 5xx, no timeout);
- p99 of rejections < 5 ms, as the server timed them (handler start to response sent): at most
  1 % of the run's refusals at the door above the server's 5 ms latency bucket (the
  difference of its Prometheus buckets over the run). The server's timing leaves out the
  generator's own lag, as the issue asks. The client's latency of rejections from their actual
  send (open_loop.uncorrected_rejection_latency_ms) still holds both processes' scheduling on
  a shared machine (measured p99 50-125 ms at load 6 while the server saw under 0.4 % of its
  rejections above 5 ms; 2.5-6 ms at load 2), so it is a figure, next to the generator's max
  lag and a flag when that lag passed 5 ms itself. Requests a pattern sheds from its queue
  after a wait it is designed to allow (codel: its --codel-target once the queue is
  congested, 5 ms) are not refused at the door: they are counted (`queue_sheds`) and left out
  of the 1 %;
- RSS growth over the overload stage <= RSS_BOUND_MIB (8 MiB), for the short and the long
  stage alike, so a long run also shows that it levels off: the peak over the median RSS of
  the last 0.5 s of the capacity stage (all 500 connections open by then).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass

import pytest

from carebench.loadgen.config import LoadConfig
from carebench.loadgen.results import LoadTestResult, OpenLoopReport
from carebench.metrics.document import MetricsDocument
from carebench.server.process import ServerProcess
from tests.reliability.conftest import Figures, long_runs
from tests.reliability.load import (
    CAPACITY_OFFERED,
    CAPACITY_SECONDS,
    MIB,
    RAMP_SECONDS,
    ProcessSampler,
    bounded_patterns,
    database_args,
    database_peak_per_second,
    drive,
    latency_buckets,
    metrics,
    steady_goodput,
    unbounded_patterns,
)

PART = "overload"
pytestmark = pytest.mark.slow

MIN_LATENCY, MAX_LATENCY = 0.080, 0.120
DATABASE_PEAK = database_peak_per_second(MIN_LATENCY, MAX_LATENCY)
SERVER_ARGS = [*database_args(MIN_LATENCY, MAX_LATENCY), "--db-pool-timeout", "250ms", "--quiet"]
OVERLOAD = 10.0
#: Connections the generator may open: naive's requests in the server at 10x (~100 in the
#: database pool, ~275 waiting up to 250 ms for it) with room to spare.
CONNECTIONS = 500
OVERLOAD_SECONDS = 20.0 if long_runs() else 2.0
GOODPUT_FLOOR = 0.9
#: Goodput at 10x against the database's peak, for a collapse already under way at 3x (which
#: the ratio to capacity cannot see). Bounded patterns measured 0.92-0.96 (ratelimit's own
#: limit, 100/s, is 0.91); naive 0.66-0.68.
DATABASE_FLOOR = 0.75
REJECTION_BOUND = 0.005
#: Server RSS growth allowed over the overload stage, short or long. Measured over 2 s: 1.2-1.6
#: MiB for bounded patterns, 2.7-2.8 for naive, which holds every request it admits. Three
#: times what was left to the rarely-run cyclic collector (server/gc_tuning.py) grew it:
#: before fad52f6 every pattern ~2.2 MiB/s without levelling (each read of /metrics left
#: HdrHistograms), before 428174f codel +5.6 over 2 s, +10.3 over 20 s (each request shed
#: from its queue left a cycle holding its frames; +1.4-1.8 since), and before f4dc5a2 naive
#: +10.2 over 2 s, +31 over 20 s (each "connection pool exhausted" 500 left one; +2.9-3.5
#: since). `gc_young_collections` over the run shows such garbage: 0 in the long runs since
#: (naive, codel, workerpool, semaphore), ~1 per 2 s for codel and naive before.
RSS_BOUND_MIB = 8.0
#: A generator lag above this is flagged: it is as large as the rejection bound itself.
LAG_FLAG_MS = 5.0
RSS_SAMPLE_INTERVAL = 0.1
#: pattern_state counters of requests shed from a queue after a wait the pattern allows by
#: design (not refused at the door).
QUEUE_SHED_COUNTERS = ("shed_queue_timeout",)


@dataclass(frozen=True, slots=True)
class OverloadRun:
    """What one pattern's two-stage run measured."""

    result: LoadTestResult
    #: Rejections the server timed over the run, those above REJECTION_BOUND, and requests
    #: shed from the queue after a designed wait (QUEUE_SHED_COUNTERS).
    rejected_server: int
    rejected_slow_server: int
    queue_sheds: int
    rss_start: int
    rss_before: float
    rss_peak: int
    rss_end: int
    #: The server's young-generation garbage collections over the run.
    gc_young_collections: int

    @property
    def capacity(self) -> float:
        return steady_goodput(self.result, RAMP_SECONDS, CAPACITY_SECONDS)

    @property
    def goodput(self) -> float:
        overload_starts = CAPACITY_SECONDS + RAMP_SECONDS
        return steady_goodput(self.result, overload_starts, CAPACITY_SECONDS + OVERLOAD_SECONDS)

    @property
    def goodput_ratio(self) -> float:
        return self.goodput / self.capacity if self.capacity > 0 else 0.0

    @property
    def keeps_goodput(self) -> bool:
        return (
            self.goodput_ratio >= GOODPUT_FLOOR and self.goodput >= DATABASE_FLOOR * DATABASE_PEAK
        )

    @property
    def door_refusals(self) -> int:
        return self.rejected_server - self.queue_sheds

    @property
    def slow_refusal_share(self) -> float:
        """Share of the refusals at the door the server took more than REJECTION_BOUND on."""
        slow = max(self.rejected_slow_server - self.queue_sheds, 0)
        return slow / self.door_refusals if self.door_refusals > 0 else 0.0

    @property
    def rss_growth_mib(self) -> float:
        return (self.rss_peak - self.rss_before) / MIB

    @property
    def server_5xx(self) -> int:
        """Responses with a 5xx status other than 503 (a refusal)."""
        codes = self.result["status_codes"].items()
        return sum(n for code, n in codes if int(code) >= 500 and code != "503")

    @property
    def open_report(self) -> OpenLoopReport:
        report = self.result["open_loop"]
        assert report is not None
        return report

    def record(self, pattern: str, figures: Figures) -> None:
        result, lag = self.result, self.open_report["max_lag_ms"]
        client = self.open_report.get("uncorrected_rejection_latency_ms")
        figures.add(
            pattern=pattern,
            capacity_seconds=CAPACITY_SECONDS,
            overload_seconds=OVERLOAD_SECONDS,
            database_peak_per_second=round(DATABASE_PEAK, 1),
            capacity_offered_per_second=round(CAPACITY_OFFERED * DATABASE_PEAK),
            capacity_per_second=round(self.capacity, 1),
            offered_per_second=round(OVERLOAD * DATABASE_PEAK),
            offered_over_capacity=round(OVERLOAD * DATABASE_PEAK / self.capacity, 1),
            schedule_kept=self.open_report["schedule_kept"],
            requests=result["total_requests"],
            goodput_per_second=round(self.goodput, 1),
            goodput_ratio=round(self.goodput_ratio, 3),
            goodput_vs_database_peak=round(self.goodput / DATABASE_PEAK, 3),
            goodput_whole_run_per_second=result["goodput_per_second"],
            rejected=result["rejected_requests"],
            queue_sheds=self.queue_sheds,
            rejected_over_5ms_server=self.rejected_slow_server,
            door_refusals_over_5ms_percent=round(100 * self.slow_refusal_share, 3),
            rejection_median_ms_client=client["median"] if client else -1.0,
            rejection_p99_ms_client=client["p99"] if client else -1.0,
            generator_max_lag_ms=lag,
            generator_lagged=lag > LAG_FLAG_MS,
            server_5xx=self.server_5xx,
            failures_other_than_rejections=result["error_requests"],
            rss_start_mib=round(self.rss_start / MIB, 1),
            rss_before_overload_mib=round(self.rss_before / MIB, 1),
            rss_peak_mib=round(self.rss_peak / MIB, 1),
            rss_end_mib=round(self.rss_end / MIB, 1),
            rss_growth_mib=round(self.rss_growth_mib, 1),
            rss_bound_mib=RSS_BOUND_MIB,
            gc_young_collections=self.gc_young_collections,
        )


def queue_sheds(document: MetricsDocument) -> int:
    state: Mapping[str, object] = document["pattern_state"]
    counts = (state.get(counter) for counter in QUEUE_SHED_COUNTERS)
    return sum(count for count in counts if isinstance(count, int))


def young_collections(document: MetricsDocument) -> int:
    return document["process"]["gc_collections"][0]


def overload(pattern: str, figures: Figures) -> OverloadRun:
    """The two-stage run on a server of its own; its figures recorded."""
    capacity_rate = round(CAPACITY_OFFERED * DATABASE_PEAK)
    overload_rate = round(OVERLOAD * DATABASE_PEAK)
    stages = f"{CAPACITY_SECONDS}s@{capacity_rate}/s,{OVERLOAD_SECONDS}s@{overload_rate}/s"
    with ServerProcess(["--pattern", pattern, *SERVER_ARGS]) as server:
        before, state_before = latency_buckets(server.url, "rejected"), metrics(server.url)
        with ProcessSampler(server.pid, RSS_SAMPLE_INTERVAL) as sampler:
            result = drive(server.url, pattern, LoadConfig(concurrency=CONNECTIONS, stages=stages))
        after, state_after = latency_buckets(server.url, "rejected"), metrics(server.url)
    rejected = after[math.inf] - before[math.inf]
    fast = after[REJECTION_BOUND] - before[REJECTION_BOUND]
    # The sampler starts just before the run measures (a /health check and no warm-up apart).
    # A sampler starved of CPU for a moment can leave that window empty (seen once in a long
    # run on a busy machine): then the capacity stage's samples, or the first one, stand in.
    settled = (
        sampler.between(CAPACITY_SECONDS - RAMP_SECONDS, CAPACITY_SECONDS - 0.05)
        or sampler.between(0.0, CAPACITY_SECONDS)
        or sampler.samples[:1]
    )
    run = OverloadRun(
        result=result,
        rejected_server=int(rejected),
        rejected_slow_server=int(rejected - fast),
        queue_sheds=queue_sheds(state_after) - queue_sheds(state_before),
        rss_start=sampler.samples[0].rss,
        rss_before=statistics.median(sample.rss for sample in settled),
        rss_peak=max(sample.rss for sample in sampler.between(CAPACITY_SECONDS)),
        rss_end=sampler.samples[-1].rss,
        gc_young_collections=young_collections(state_after) - young_collections(state_before),
    )
    run.record(pattern, figures)
    return run


@pytest.mark.parametrize("pattern", bounded_patterns())
def test_bounded_pattern_holds_at_ten_times_capacity(pattern: str, figures: Figures) -> None:
    """At 10x capacity, open loop: goodput >= 90 % of capacity (and 75 % of the database's
    peak), the excess refused with a server-timed p99 under 5 ms, nothing failing otherwise,
    RSS growth within its bound. A goodput under its floors is measured once more."""
    run = overload(pattern, figures)
    attempts, first_ratio = 1, run.goodput_ratio
    if not run.keeps_goodput:  # once more on a fresh server: the windows' jitter, or a collapse?
        run, attempts = overload(pattern, figures), 2
    figures.add(attempts=attempts, first_attempt_goodput_ratio=round(first_ratio, 3))
    seen, result = figures.values, run.result
    assert run.goodput_ratio >= GOODPUT_FLOOR, seen
    assert run.goodput >= DATABASE_FLOOR * DATABASE_PEAK, seen
    assert result["rejected_requests"] >= 0.5 * result["total_requests"], seen
    assert run.rejected_server > 0 and run.slow_refusal_share <= 0.01, seen
    assert run.server_5xx == result["error_requests"] == 0, seen
    assert run.rss_growth_mib <= RSS_BOUND_MIB, seen


@pytest.mark.parametrize("pattern", unbounded_patterns())
def test_unbounded_pattern_passes_the_overload_to_the_database(
    pattern: str, figures: Figures
) -> None:
    """An unbounded pattern at 10x refuses nothing: the database's pool turns the excess into
    500s and goodput falls below 90 % of the database's peak (pinned at the pool's 100
    queries at once, ~72/s, against ~110/s at its best; its own "capacity" at 3x is already
    that collapse). Its RSS growth is a figure."""
    run = overload(pattern, figures)
    seen, result = figures.values, run.result
    assert result["rejected_requests"] == 0, seen
    assert run.server_5xx > 0, seen
    assert run.goodput < GOODPUT_FLOOR * DATABASE_PEAK, seen
