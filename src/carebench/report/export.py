"""Saving results: JSON (the versioned schema), a flat CSV table, and the HTML report."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from carebench.loadgen.results import LoadTestResult
from carebench.report.csv_table import to_csv


def to_json(results: Sequence[LoadTestResult]) -> str:
    return json.dumps(results, indent=2)


def write_outputs(
    results: Sequence[LoadTestResult],
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
        # Imported only when asked for: the HTML report loads matplotlib.
        from carebench.report.html import write_html

        write_html(results, html_path)
