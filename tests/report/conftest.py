"""Result and sweep documents built in code, shaped like `carebench loadtest` output."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import pytest

from carebench.loadgen.machine import MachineDescription
from carebench.loadgen.results import (
    OUTCOMES,
    SCHEMA_VERSION,
    LoadTestResult,
    Outcome,
    TimelinePoint,
    outcome_counts,
)
from carebench.loadgen.sweep import SWEEP_SCHEMA_VERSION, SweepDocument
from carebench.metrics.latency import LatencySummary, SpectrumPoint

LEVELS = (10, 50, 100)
MACHINE: MachineDescription = {
    "cpu_model": "Test CPU 3000",
    "cores": 4,
    "memory_bytes": 8 * 2**30,
    "os": "Linux",
    "python": "3.11.7",
    "packages": {"uvicorn": "0.30.0"},
    "date": "2026-01-01T00:00:00+00:00",
    "load_generator": {"protocol": "compiled", "callback_loop": "python (not built)"},
}


def latency(p99: float) -> LatencySummary:
    """A latency summary whose percentiles scale with `p99`."""
    return {
        "min": p99 * 0.1,
        "mean": p99 * 0.5,
        "median": p99 * 0.45,
        "p90": p99 * 0.8,
        "p95": p99 * 0.9,
        "p99": p99,
        "p99_9": p99 * 1.1,
        "max": p99 * 1.2,
        "stddev": p99 * 0.2,
    }


def spectrum(p99: float) -> list[SpectrumPoint]:
    """A short HdrHistogram-style percentile spectrum ending at the 100th percentile."""
    points = ((0.0, 0.1), (50.0, 0.45), (90.0, 0.8), (99.0, 1.0), (99.9, 1.1), (100.0, 1.2))
    return [{"percentile": p, "value_ms": p99 * share, "count": int(p)} for p, share in points]


def timeline(rps: float, p99: float) -> list[TimelinePoint]:
    """Four 0.5 s intervals at a steady rate."""
    completed = int(rps / 2)
    return [
        {
            "t": t / 2,
            "completed": completed,
            "throughput": rps,
            "goodput": rps,
            **outcome_counts({**dict.fromkeys(OUTCOMES, 0), "success": completed}),
            "p50_ms": p99 / 2,
            "p99_ms": p99,
        }
        for t in range(4)
    ]


def make_result(
    pattern: str = "naive",
    *,
    rps: float = 100.0,
    p99: float = 50.0,
    total: int = 200,
    outcomes: Mapping[Outcome, int] | None = None,
    **overrides: Any,
) -> LoadTestResult:
    """A valid result: `total` requests, all successful unless `outcomes` says so.

    `overrides` may break the shape on purpose (the reader's checks are tested with them).
    """
    counts = outcome_counts({**dict.fromkeys(OUTCOMES, 0), "success": total, **(outcomes or {})})
    errors = total - counts["success"] - counts["rejected"]
    result: LoadTestResult = {
        "schema_version": SCHEMA_VERSION,
        "carebench_version": "0.0.0",
        "pattern": pattern,
        "mode": "http",
        "loop": "closed",
        "target": "http://127.0.0.1:8000",
        "total_requests": total,
        "success_requests": counts["success"],
        "error_requests": errors,
        "rejected_requests": counts["rejected"],
        "duration_seconds": total / rps,
        "requests_per_second": rps,
        "goodput_per_second": rps * counts["success"] / total,
        "latency_ms": latency(p99),
        "error_rate_percent": 100.0 * errors / total,
        "rejection_rate_percent": 100.0 * counts["rejected"] / total,
        "outcomes": counts,
        "status_codes": {"200": counts["success"]},
        "success_latency_ms": latency(p99),
        "rejection_latency_ms": latency(1.0 if counts["rejected"] else 0.0),
        "latency_spectrum": spectrum(p99),
        "latency_histogram": "",
        "timeline": timeline(rps, p99),
        "open_loop": None,
        "server_samples": [
            {"t": t / 4, "in_flight": t, "queued": max(t - 2, 0), "rss_bytes": 40_000_000}
            for t in range(6)
        ],
        "by_priority": None,
        "interrupted": False,
        "config": {
            "requests": total,
            "concurrency": 10,
            "rate": None,
            "duration": None,
            "arrivals": None,
            "timeout": 5.0,
            "warmup": 0.0,
            "ids": "fixed:P12345",
            "priorities": None,
            "honor_retry_after": False,
            "seed": 1,
            "server_args": [],
        },
        "server_metrics": None,
        "machine": MACHINE.copy(),
    }
    return cast(LoadTestResult, {**result, **overrides})


def make_sweep(
    curves: Mapping[str, Sequence[tuple[float, float]]], levels: Sequence[float] = LEVELS
) -> SweepDocument:
    """A sweep document: for each pattern, one (throughput, p99) pair per level."""
    results = [
        make_result(name, rps=rps, p99=p99, level=level)
        for name, points in curves.items()
        for level, (rps, p99) in zip(levels, points, strict=True)
    ]
    return {
        "schema_version": SWEEP_SCHEMA_VERSION,
        "kind": "sweep",
        "axis": "concurrency",
        "levels": list(levels),
        "duration_seconds": 5.0,
        "interrupted": False,
        "machine": MACHINE.copy(),
        "results": results,
    }


#: naive peaks at 50 and its p99 passes 2x its lowest-level p99 at 100; workerpool never does.
SWEEP_CURVES = {
    "naive": [(50.0, 10.0), (90.0, 15.0), (70.0, 40.0)],
    "workerpool": [(50.0, 10.0), (100.0, 12.0), (100.0, 18.0)],
}


def sample_results() -> list[LoadTestResult]:
    """Three patterns; workerpool has the highest goodput, naive has some backend errors."""
    return [
        make_result("naive", rps=80.0, p99=120.0, outcomes={"success": 190, "backend_error": 10}),
        make_result("workerpool", rps=140.0, p99=60.0),
        make_result("optimized", rps=100.0, p99=70.0, outcomes={"success": 180, "rejected": 20}),
    ]


@pytest.fixture
def results() -> list[LoadTestResult]:
    return sample_results()


@pytest.fixture
def sweep() -> SweepDocument:
    return make_sweep(SWEEP_CURVES)
