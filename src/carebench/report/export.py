"""Saving results: JSON (the versioned schema), a flat CSV table, and the HTML report."""

from __future__ import annotations

import json
from collections.abc import Sequence

from carebench.loadgen.results import LoadTestResult
from carebench.report.csv_table import to_csv
from carebench.report.files import write_atomically


def to_json(results: Sequence[LoadTestResult]) -> str:
    return json.dumps(results, indent=2)


def write_outputs(
    results: Sequence[LoadTestResult],
    json_path: str | None = None,
    csv_path: str | None = None,
    html_path: str | None = None,
) -> None:
    """Write whichever outputs were asked for, each whole or not at all."""
    if json_path:
        write_atomically(json_path, to_json(results) + "\n")
    if csv_path:
        write_atomically(csv_path, to_csv(results))
    if html_path:
        # Imported only when asked for: the HTML report loads matplotlib.
        from carebench.report.html import write_html

        write_html(results, html_path)
