"""Saving results: JSON (the versioned schema), a flat CSV table, and the HTML report."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

CSV_COLUMNS = (
    "pattern",
    "mode",
    "loop",
    "total_requests",
    "success_requests",
    "error_requests",
    "rejected_requests",
    "duration_seconds",
    "requests_per_second",
    "goodput_per_second",
    "latency_min_ms",
    "latency_mean_ms",
    "latency_median_ms",
    "latency_p90_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "latency_p99_9_ms",
    "latency_max_ms",
    "success_p99_ms",
    "error_rate_percent",
    "rejection_rate_percent",
    "timeouts",
    "connection_errors",
    "backend_errors",
    "client_errors",
)


def to_json(results: list[dict[str, Any]]) -> str:
    return json.dumps(results, indent=2)


def csv_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for r in results:
        lat, outcomes = r["latency_ms"], r["outcomes"]
        row = {key: r[key] for key in CSV_COLUMNS if key in r}
        for key in ("min", "mean", "median", "p90", "p95", "p99", "p99_9", "max"):
            row[f"latency_{key}_ms"] = lat[key]
        row["success_p99_ms"] = r["success_latency_ms"]["p99"]
        row["timeouts"] = outcomes["timeout"]
        row["connection_errors"] = outcomes["connection_error"]
        row["backend_errors"] = outcomes["backend_error"]
        row["client_errors"] = outcomes["client_error"]
        rows.append(row)
    return rows


def to_csv(results: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    writer.writerows(csv_rows(results))
    return out.getvalue()


def write_outputs(
    results: list[dict[str, Any]],
    json_path: str | None = None,
    csv_path: str | None = None,
    html_path: str | None = None,
) -> None:
    """Write whichever outputs were asked for."""
    if json_path:
        Path(json_path).write_text(to_json(results) + "\n", encoding="utf-8")
    if csv_path:
        Path(csv_path).write_text(to_csv(results), encoding="utf-8")
    if html_path:
        from carebench.report.html import write_html

        write_html(results, html_path)
