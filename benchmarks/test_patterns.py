"""The reference's `go test -bench=. -benchmem ./benchmarks/`, for every registered pattern.

* `test_zero_latency_overhead`: the pattern's own cost per request (backend answers at once),
  timed rounds, then one untimed batch for GC work and one traced batch for allocations.
* `test_reference_latency_throughput`: 50-100 ms backend; throughput must match Little's law.
* `test_memory`: RSS and traced memory over 10k requests at concurrency 100.
* `test_optimized_vs_workerpool_allocations`: the two side by side, with a verdict.
* `test_hot_path_piece`: pieces of the server's request path outside the patterns (metrics,
  timestamp, JSON, the one-write transport, the query deadline), per call.

See benchmarks/README.md for what every number means.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from collections.abc import Callable
from typing import Any

import pytest
import uvloop
from memory import AllocationTracer, GcMonitor, GcWork, TracedMemory

from carebench.backends.records import synthetic_patient
from carebench.metrics.process import rss_bytes
from carebench.metrics.requests import RequestMetrics
from carebench.patterns.base import pattern_names, within_deadline
from carebench.responses import PlainResponseEncoder, utc_timestamp
from carebench.server.uvicorn_protocol import HeadHoldingTransport
from conftest import (
    CONCURRENCY_LEVELS,
    HOT_PATH_TABLE,
    MEMORY_TABLE,
    REFERENCE_TABLE,
    ZERO_TABLE,
    BatchResult,
    PatternHarness,
    ProbedRounds,
    SummaryLog,
)

MakeHarness = Callable[[str, str, int], PatternHarness]

#: One timed round at zero latency: enough requests that loop start-up is noise.
ZERO_BATCH = 2000
ZERO_ROUNDS = 20
#: Untimed batches for the collector (larger: collections are rare events) and tracemalloc.
GC_BATCH = 20_000
TRACED_BATCH = 2000
#: A reference-latency round lasts about this long: requests = expected throughput x this.
REFERENCE_ROUND_SECONDS = 1.0
#: Measured / expected throughput must fall in here. Below 1 by a few % is expected: the
#: batch ends with a drain in which fewer than `concurrency` requests are in flight.
LITTLES_LAW_BAND = (0.80, 1.05)
MEMORY_CONCURRENCY = 100
MEMORY_REQUESTS = 10_000
#: optimized vs workerpool, alternating: timed rounds, then GC and traced batches (medians kept).
COMPARISON_ROUNDS = 10
COMPARISON_REPEATS = 3


by_concurrency = pytest.mark.parametrize("concurrency", CONCURRENCY_LEVELS, ids=lambda c: f"c{c}")
by_pattern = pytest.mark.parametrize("pattern_name", pattern_names())


def assert_all_served(result: BatchResult, concurrency: int, errors_allowed: bool) -> None:
    """Fail if the run measured refusals instead of service, or never reached `concurrency`."""
    outcomes = result.outcomes()
    assert outcomes["rejected"] == 0, f"{outcomes['rejected']} requests rejected: {outcomes}"
    assert outcomes["deadline_exceeded"] == 0, f"requests timed out: {outcomes}"
    if not errors_allowed:
        assert outcomes["ok"] == result.requests, f"not every request succeeded: {outcomes}"
    assert result.peak_in_flight == concurrency, (
        f"only {result.peak_in_flight} of {concurrency} requests were ever in flight at once"
    )


def measure_gc(harness: PatternHarness, requests: int) -> tuple[GcWork, BatchResult]:
    """Collections and pause time over one untraced batch."""
    with GcMonitor() as monitor:
        result = harness.run(requests)
    return monitor.work, result


def measure_allocations(harness: PatternHarness, requests: int) -> tuple[TracedMemory, BatchResult]:
    """tracemalloc over one batch, with a snapshot once every client has a request in flight."""
    tracer = AllocationTracer()
    tracer.start()
    try:
        result = harness.run(requests, on_saturated=tracer.sample)
    finally:
        traced = tracer.stop()
    return traced, result


def per_request_timing(seconds: float, requests: int) -> dict[str, float]:
    return {
        "us_per_request": round(seconds / requests * 1e6, 3),
        "requests_per_second": round(requests / seconds, 1),
    }


@by_concurrency
@by_pattern
def test_zero_latency_overhead(
    benchmark: Any,
    make_harness: MakeHarness,
    summary: SummaryLog,
    pattern_name: str,
    concurrency: int,
) -> None:
    """Each pattern serves every request at zero backend latency; records its cost per request."""
    harness = make_harness(pattern_name, "zero", concurrency)
    served = BatchResult()

    rounds = ProbedRounds(warmup_rounds=1)

    def run_batch() -> None:
        batch = harness.run(ZERO_BATCH)
        rounds.record(batch.elapsed)
        served.add(batch)

    benchmark.group = f"zero-c{concurrency}"
    benchmark.pedantic(
        run_batch, setup=rounds.probe, rounds=ZERO_ROUNDS, iterations=1, warmup_rounds=1
    )
    gc_work, gc_batch = measure_gc(harness, GC_BATCH)
    traced, traced_batch = measure_allocations(harness, TRACED_BATCH)
    for batch in (gc_batch, traced_batch):
        served.add(batch)

    assert_all_served(served, concurrency, errors_allowed=False)
    assert traced.in_flight > 0, "the in-flight snapshot was never taken"
    info = benchmark.extra_info
    info.update(pattern=pattern_name, backend="zero", concurrency=concurrency)
    info.update(requests_per_round=ZERO_BATCH, peak_in_flight=served.peak_in_flight)
    info.update(per_request_timing(rounds.median_seconds, ZERO_BATCH))
    info.update(probes_per_1k_requests=rounds.probes_per_1k(ZERO_BATCH))
    info.update(gc_work.per_1k(GC_BATCH), gc_collections_by_generation=list(gc_work.collections))
    info.update(traced.per_request(TRACED_BATCH), snapshot_in_flight=traced.in_flight)
    info.update(served.outcomes(), cpu_probe_us=rounds.probe_us)
    name = f"zero-c{concurrency} {pattern_name}"
    summary.row(ZERO_TABLE, name, dict(info))
    summary.probe(name, rounds)


@by_concurrency
@by_pattern
def test_reference_latency_throughput(
    benchmark: Any,
    make_harness: MakeHarness,
    summary: SummaryLog,
    pattern_name: str,
    concurrency: int,
) -> None:
    """Throughput at 50-100 ms matches Little's law: min(concurrency, capacity) / mean latency."""
    harness = make_harness(pattern_name, "reference", concurrency)
    mean_latency = sum(harness.backend_config.resolved().latency_range) / 2
    capacity = harness.pattern.backend_concurrency
    busy = min(concurrency, capacity) if capacity is not None else concurrency
    expected = busy / mean_latency
    requests = max(concurrency, round(expected * REFERENCE_ROUND_SECONDS))
    served = BatchResult()

    def run_batch() -> None:
        served.add(harness.run(requests))

    benchmark.group = f"reference-c{concurrency}"
    benchmark.pedantic(run_batch, rounds=1, iterations=1, warmup_rounds=0)

    assert_all_served(served, concurrency, errors_allowed=True)
    measured = requests / served.elapsed
    ratio = measured / expected
    info = benchmark.extra_info
    info.update(pattern=pattern_name, backend="reference", concurrency=concurrency)
    info.update(requests=requests, backend_concurrency=capacity)
    info.update(mean_latency_ms=round(mean_latency * 1000, 3))
    info.update(
        requests_per_second=round(measured, 1),
        expected_requests_per_second=round(expected, 1),
        littles_law_ratio=round(ratio, 3),
    )
    info.update(served.outcomes())
    summary.row(REFERENCE_TABLE, f"reference-c{concurrency} {pattern_name}", dict(info))
    low, high = LITTLES_LAW_BAND
    assert low <= ratio <= high, (
        f"{pattern_name} at c{concurrency}: {measured:.0f} req/s, Little's law expects "
        f"{expected:.0f} (min({concurrency}, {capacity}) / {mean_latency * 1000:.0f} ms)"
    )


@by_pattern
def test_memory(
    benchmark: Any, make_harness: MakeHarness, summary: SummaryLog, pattern_name: str
) -> None:
    """RSS before and after 10k requests at concurrency 100, and the traced peak."""
    harness = make_harness(pattern_name, "zero", MEMORY_CONCURRENCY)
    harness.run(ZERO_BATCH)
    served = BatchResult()

    rounds = ProbedRounds(warmup_rounds=0)

    def run_batch() -> None:
        batch = harness.run(MEMORY_REQUESTS)
        rounds.record(batch.elapsed)
        served.add(batch)

    gc.collect()
    rss_before = rss_bytes()
    benchmark.group = f"memory-c{MEMORY_CONCURRENCY}"
    benchmark.pedantic(run_batch, setup=rounds.probe, rounds=1, iterations=1, warmup_rounds=0)
    gc.collect()
    rss_after = rss_bytes()
    traced, traced_batch = measure_allocations(harness, MEMORY_REQUESTS)
    served.add(traced_batch)

    assert_all_served(served, MEMORY_CONCURRENCY, errors_allowed=False)
    info = benchmark.extra_info
    info.update(pattern=pattern_name, backend="zero", concurrency=MEMORY_CONCURRENCY)
    info.update(
        requests=MEMORY_REQUESTS,
        rss_before_mb=round(rss_before / 2**20, 1),
        rss_after_mb=round(rss_after / 2**20, 1),
        rss_growth_kb=round((rss_after - rss_before) / 1024, 1),
        peak_traced_kb=round(traced.peak_bytes / 1024, 1),
    )
    info.update(traced.per_request(MEMORY_REQUESTS), cpu_probe_us=rounds.probe_us)
    name = f"memory-c{MEMORY_CONCURRENCY} {pattern_name}"
    summary.row(MEMORY_TABLE, name, dict(info))
    summary.probe(name, rounds)


def _median_ratio(ours: list[float], theirs: list[float]) -> float | None:
    """median(ours) / median(theirs), None when both are zero (nothing to compare)."""
    top, bottom = statistics.median(ours), statistics.median(theirs)
    if bottom == 0:
        return None if top == 0 else float("inf")
    return round(top / bottom, 3)


def _verdict(ratio: float | None, better: str, not_better: str, detail: str) -> str:
    """One line saying whether optimized beats workerpool (a ratio below 1 is better)."""
    if ratio is None:
        return f"optimized vs workerpool: nothing to compare ({detail})"
    claim = better if ratio < 1.0 else not_better
    return f"optimized {claim} than workerpool: {detail}"


def test_optimized_vs_workerpool_allocations(
    benchmark: Any, make_harness: MakeHarness, summary: SummaryLog
) -> None:
    """Measures optimized and workerpool side by side at c100 and states which allocates less."""
    pair = ("workerpool", "optimized")
    missing = [name for name in pair if name not in pattern_names()]
    if missing:
        pytest.skip(f"pattern(s) not registered: {', '.join(missing)}")
    harnesses = {name: make_harness(name, "zero", MEMORY_CONCURRENCY) for name in pair}
    samples: dict[str, dict[str, list[float]]] = {name: {} for name in pair}
    served = {name: BatchResult() for name in pair}

    def record(name: str, values: dict[str, float]) -> None:
        for key, value in values.items():
            samples[name].setdefault(key, []).append(value)

    rounds = ProbedRounds(warmup_rounds=0)

    def run_both() -> None:
        elapsed = 0.0
        for name, harness in harnesses.items():
            batch = harness.run(ZERO_BATCH)
            served[name].add(batch)
            record(name, {"seconds": batch.elapsed})
            elapsed += batch.elapsed
        rounds.record(elapsed)

    for harness in harnesses.values():
        harness.run(ZERO_BATCH)  # warm-up: record cache, object pools, the loop
    benchmark.group = "optimized-vs-workerpool"
    benchmark.pedantic(run_both, setup=rounds.probe, rounds=COMPARISON_ROUNDS, iterations=1)
    for _ in range(COMPARISON_REPEATS):
        for name, harness in harnesses.items():
            gc_work, gc_batch = measure_gc(harness, GC_BATCH)
            traced, traced_batch = measure_allocations(harness, TRACED_BATCH)
            served[name].add(gc_batch)
            served[name].add(traced_batch)
            record(name, traced.per_request(TRACED_BATCH) | gc_work.per_1k(GC_BATCH))

    def ratio(key: str) -> float | None:
        return _median_ratio(samples["optimized"][key], samples["workerpool"][key])

    ratios = {
        "allocs_ratio": ratio("allocs_per_request"),
        "bytes_ratio": ratio("bytes_per_request"),
        "peak_bytes_ratio": ratio("peak_bytes_per_request"),
        "gc_collections_ratio": ratio("gc_collections_per_1k_requests"),
        "gc_pause_ratio": ratio("gc_pause_ms_per_1k_requests"),
        "time_ratio": ratio("seconds"),
    }
    info = benchmark.extra_info
    info.update(ratios, concurrency=MEMORY_CONCURRENCY, cpu_probe_us=rounds.probe_us)
    for name in pair:
        for key, values in samples[name].items():
            info[f"{name}_{key}"] = statistics.median(values)
    summary.probe("optimized-vs-workerpool", rounds)
    summary.note(
        _verdict(
            ratios["allocs_ratio"],
            "allocates less",
            "does NOT allocate less",
            f"optimized/workerpool blocks held per in-flight request {ratios['allocs_ratio']}, "
            f"bytes {ratios['bytes_ratio']}, peak bytes {ratios['peak_bytes_ratio']}",
        )
    )
    summary.note(
        _verdict(
            ratios["gc_collections_ratio"],
            "does less GC work",
            "does NOT do less GC work",
            f"optimized/workerpool GC collections per 1k requests "
            f"{ratios['gc_collections_ratio']}, GC pause {ratios['gc_pause_ratio']}",
        )
    )
    summary.note(
        _verdict(
            ratios["time_ratio"],
            "is faster",
            "is NOT faster",
            f"optimized/workerpool time per request {ratios['time_ratio']} "
            f"(side by side, median of {COMPARISON_ROUNDS} rounds)",
        )
    )
    for name in pair:
        assert_all_served(served[name], MEMORY_CONCURRENCY, errors_allowed=False)


#: Calls per timed round of a hot-path piece: ~5-40 ms, long enough to time steadily.
HOT_PATH_CALLS = 20_000


class NullTransport:
    """Takes writes and drops them: what is timed is the transport wrapper, not a socket."""

    def write(self, data: bytes) -> None:
        return None

    def is_closing(self) -> bool:
        return False


def metrics_record() -> Callable[[], None]:
    metrics = RequestMetrics("workerpool")
    return lambda: metrics.record("success", 0.000734, 200)


def encode_patient() -> Callable[[], bytes]:
    encoder, patient = PlainResponseEncoder(), synthetic_patient("P12345")
    return lambda: encoder.encode_patient(patient, "5f0c2a9e1b7d-0000002a")


def client_gone() -> None:
    return None


def head_and_body_write() -> Callable[[], None]:
    real: Any = NullTransport()

    def respond() -> None:
        transport = HeadHoldingTransport(real, client_gone)
        transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n")
        transport.write(b"hello")

    return respond


async def answer_at_once() -> int:
    return 1


def within_deadline_batch() -> Callable[[], None]:
    """HOT_PATH_CALLS awaits of `within_deadline` around a coroutine that does not suspend."""
    runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)

    async def batch() -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30.0
        for _ in range(HOT_PATH_CALLS):
            await within_deadline(answer_at_once(), deadline, loop)

    return lambda: runner.run(batch())


#: name -> (factory of the timed callable, whether one call already covers HOT_PATH_CALLS).
HOT_PATH_PIECES: dict[str, tuple[Callable[[], Callable[[], object]], bool]] = {
    "metrics-record": (metrics_record, False),
    "utc-timestamp": (lambda: utc_timestamp, False),
    "encode-patient": (encode_patient, False),
    "head-and-body-write": (head_and_body_write, False),
    "within-deadline": (within_deadline_batch, True),
}


@pytest.mark.parametrize("piece", list(HOT_PATH_PIECES))
def test_hot_path_piece(benchmark: Any, summary: SummaryLog, piece: str) -> None:
    """The cost per call of a piece every server request runs, gated like the patterns."""
    factory, batched = HOT_PATH_PIECES[piece]
    call = factory()
    rounds = ProbedRounds(warmup_rounds=1)

    def run_round() -> None:
        started = time.perf_counter()
        if batched:
            call()
        else:
            for _ in range(HOT_PATH_CALLS):
                call()
        rounds.record(time.perf_counter() - started)

    benchmark.group = "hot-path"
    benchmark.pedantic(
        run_round, setup=rounds.probe, rounds=ZERO_ROUNDS, iterations=1, warmup_rounds=1
    )
    info = benchmark.extra_info
    info.update(piece=piece, calls_per_round=HOT_PATH_CALLS)
    info.update(us_per_request=round(rounds.median_seconds / HOT_PATH_CALLS * 1e6, 4))
    info.update(probes_per_1k_requests=rounds.probes_per_1k(HOT_PATH_CALLS))
    summary.row(HOT_PATH_TABLE, f"hot-path {piece}", dict(info))
    summary.probe(f"hot-path {piece}", rounds)
