"""Compare two benchmark runs on the numbers that hold still on a noisy machine.

    .venv/bin/python benchmarks/compare.py .benchmarks/baseline.json .benchmarks/latest.json

pytest-benchmark's own `--benchmark-compare-fail=median:N%` gates on raw round times, which a
busy neighbour on a shared 2-core machine moves by 50 % between identical runs. This gate
uses instead, per benchmark, from `extra_info`:

* `probes_per_1k_requests`: round time divided by a CPU probe timed just before the round,
  so it holds still while the machine slows down (fails beyond `--max-slowdown` %);
* `allocs_per_request` and `bytes_per_request`: what an in-flight request holds, which
  depends on the code, not on the machine (fails beyond `--max-alloc-growth` %).

Raw median times are printed beside them for context, never gated. Exits 1 on a regression,
2 when a file is missing or not a pytest-benchmark JSON report.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: extra_info key -> which threshold applies to it.
GATED = {
    "probes_per_1k_requests": "slowdown",
    "allocs_per_request": "alloc",
    "bytes_per_request": "alloc",
}


@dataclass(frozen=True, slots=True)
class Change:
    """One metric of one benchmark, before and after."""

    benchmark: str
    metric: str
    baseline: float
    latest: float
    limit_percent: float | None

    @property
    def percent(self) -> float:
        if self.baseline == 0:
            return 0.0 if self.latest == 0 else float("inf")
        return (self.latest / self.baseline - 1.0) * 100.0

    @property
    def regressed(self) -> bool:
        return self.limit_percent is not None and self.percent > self.limit_percent


class ReportError(Exception):
    """A report is missing or unreadable; the message says how to get one."""


def load_benchmarks(path: Path) -> dict[str, dict[str, Any]]:
    """Test name -> benchmark entry of a pytest-benchmark JSON report."""
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
        # The test id, not the full path: unique within this suite and half as wide.
        return {bench["name"]: bench for bench in report["benchmarks"]}
    except FileNotFoundError:
        raise ReportError(
            f"{path} does not exist; run 'make bench-baseline' (baseline) or "
            "'make bench' (latest) first"
        ) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ReportError(f"{path} is not a pytest-benchmark JSON report ({exc})") from None


def compare(
    baseline: dict[str, dict[str, Any]],
    latest: dict[str, dict[str, Any]],
    limits: dict[str, float],
) -> list[Change]:
    """Every gated metric and the raw median of the benchmarks present in both runs."""
    changes: list[Change] = []
    for name in sorted(baseline.keys() & latest.keys()):
        before, after = baseline[name], latest[name]
        changes.append(
            Change(name, "median_s", before["stats"]["median"], after["stats"]["median"], None)
        )
        for metric, kind in GATED.items():
            old, new = before["extra_info"].get(metric), after["extra_info"].get(metric)
            if isinstance(old, int | float) and isinstance(new, int | float):
                changes.append(Change(name, metric, float(old), float(new), limits[kind]))
    return changes


def render(changes: Sequence[Change]) -> str:
    """One line per benchmark: the change of each metric, gated ones marked when they fail."""
    by_benchmark: dict[str, dict[str, Change]] = {}
    for change in changes:
        by_benchmark.setdefault(change.benchmark, {})[change.metric] = change
    metrics = ["median_s", *GATED]
    width = max(len(name) for name in by_benchmark)
    lines = [f"{'benchmark (change vs baseline)':<{width}}" + "".join(f" {m:>24}" for m in metrics)]
    for name, row in by_benchmark.items():
        cells = []
        for metric in metrics:
            found = row.get(metric)
            if found is None:
                cells.append(f" {'-':>24}")
                continue
            mark = " !" if found.regressed else "  "
            cells.append(f" {found.latest:>12.5g} {found.percent:>+8.1f}%{mark}")
        lines.append(f"{name:<{width}}" + "".join(cells))
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("baseline", type=Path, help="JSON report to compare against")
    parser.add_argument("latest", type=Path, help="JSON report of the run under test")
    parser.add_argument(
        "--max-slowdown",
        type=float,
        default=20.0,
        help="percent growth of probes_per_1k_requests that fails (default 20)",
    )
    parser.add_argument(
        "--max-alloc-growth",
        type=float,
        default=10.0,
        help="percent growth of allocs/bytes per request that fails (default 10)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        baseline, latest = load_benchmarks(args.baseline), load_benchmarks(args.latest)
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    limits = {"slowdown": args.max_slowdown, "alloc": args.max_alloc_growth}
    changes = compare(baseline, latest, limits)
    if not changes:
        print("error: the two reports have no benchmark in common", file=sys.stderr)
        return 2
    print(render(changes))
    regressed = [change for change in changes if change.regressed]
    for change in regressed:
        print(
            f"regression: {change.benchmark} {change.metric} {change.percent:+.1f}% "
            f"(limit +{change.limit_percent:g}%)",
            file=sys.stderr,
        )
    if not regressed:
        gated = sum(change.limit_percent is not None for change in changes)
        print(f"no regression in {gated} gated numbers")
    return 1 if regressed else 0


if __name__ == "__main__":
    sys.exit(main())
