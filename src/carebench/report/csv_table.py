"""Results as a flat CSV table: one row per result, latency percentiles as their own columns."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence

from carebench.loadgen.results import LoadTestResult
from carebench.loadgen.sweep import SweepDocument

Cell = str | int | float
#: (column, how to read it from a result), in column order.
CSV_FIELDS: tuple[tuple[str, Callable[[LoadTestResult], Cell]], ...] = (
    ("pattern", lambda r: r["pattern"]),
    ("mode", lambda r: r["mode"]),
    ("loop", lambda r: r["loop"]),
    ("total_requests", lambda r: r["total_requests"]),
    ("success_requests", lambda r: r["success_requests"]),
    ("error_requests", lambda r: r["error_requests"]),
    ("rejected_requests", lambda r: r["rejected_requests"]),
    ("duration_seconds", lambda r: r["duration_seconds"]),
    ("requests_per_second", lambda r: r["requests_per_second"]),
    ("goodput_per_second", lambda r: r["goodput_per_second"]),
    ("latency_min_ms", lambda r: r["latency_ms"]["min"]),
    ("latency_mean_ms", lambda r: r["latency_ms"]["mean"]),
    ("latency_median_ms", lambda r: r["latency_ms"]["median"]),
    ("latency_p90_ms", lambda r: r["latency_ms"]["p90"]),
    ("latency_p95_ms", lambda r: r["latency_ms"]["p95"]),
    ("latency_p99_ms", lambda r: r["latency_ms"]["p99"]),
    ("latency_p99_9_ms", lambda r: r["latency_ms"]["p99_9"]),
    ("latency_max_ms", lambda r: r["latency_ms"]["max"]),
    ("success_p99_ms", lambda r: r["success_latency_ms"]["p99"]),
    ("error_rate_percent", lambda r: r["error_rate_percent"]),
    ("rejection_rate_percent", lambda r: r["rejection_rate_percent"]),
    ("timeouts", lambda r: r["outcomes"]["timeout"]),
    ("connection_errors", lambda r: r["outcomes"]["connection_error"]),
    ("backend_errors", lambda r: r["outcomes"]["backend_error"]),
    ("client_errors", lambda r: r["outcomes"]["client_error"]),
)
CSV_COLUMNS = tuple(name for name, _ in CSV_FIELDS)


def csv_row(result: LoadTestResult) -> dict[str, Cell]:
    """One result as a row of CSV_COLUMNS."""
    return {name: read(result) for name, read in CSV_FIELDS}


def to_csv(results: Sequence[LoadTestResult]) -> str:
    """A header and one row per result."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    writer.writerows(csv_row(r) for r in results)
    return out.getvalue()


def sweep_csv(sweep: SweepDocument) -> str:
    """The loadtest CSV columns, one row per pattern per level, with the level first."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=("level", *CSV_COLUMNS))
    writer.writeheader()
    for result in sweep["results"]:
        writer.writerow({"level": result["level"], **csv_row(result)})
    return out.getvalue()
