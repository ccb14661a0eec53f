"""Terminal output: the reference's per-pattern block, a summary table and the winner."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from carebench.report.compare import choose_winner


def detail_block(result: dict[str, Any]) -> str:
    """The reference's result block for one pattern, plus goodput and the rejection latency."""
    lat = result["latency_ms"]
    lines = [
        f"=== {result['pattern']} ({result['mode']}, {result['loop']} loop) ===",
        f"Total requests:   {result['total_requests']}",
        f"Successful:       {result['success_requests']}",
        f"Errors:           {result['error_requests']}  {_breakdown(result)}",
        f"Rejected:         {result['rejected_requests']}",
        f"Duration:         {result['duration_seconds']:.2f}s",
        f"Throughput:       {result['requests_per_second']:.1f} req/s "
        f"(goodput {result['goodput_per_second']:.1f} req/s)",
        f"Latency (ms):     min {lat['min']:.1f}  mean {lat['mean']:.1f}  "
        f"median {lat['median']:.1f}  p95 {lat['p95']:.1f}  p99 {lat['p99']:.1f}  "
        f"max {lat['max']:.1f}",
        f"Error rate:       {result['error_rate_percent']:.2f}%",
        f"Rejection rate:   {result['rejection_rate_percent']:.2f}%",
    ]
    if result["rejected_requests"]:
        rej = result["rejection_latency_ms"]
        lines.append(f"Rejected in (ms): median {rej['median']:.2f}  p99 {rej['p99']:.2f}")
    lines.extend(_open_loop_lines(result.get("open_loop")))
    lines.extend(_priority_lines(result.get("by_priority")))
    if result.get("interrupted"):
        lines.append("(interrupted: partial results)")
    return "\n".join(lines)


def _breakdown(result: dict[str, Any]) -> str:
    outcomes = result["outcomes"]
    parts = [
        f"{name.replace('_', ' ')} {outcomes[name]}"
        for name in ("backend_error", "timeout", "client_error", "connection_error")
        if outcomes.get(name)
    ]
    return f"({', '.join(parts)})" if parts else ""


def _priority_lines(by_priority: dict[str, Any] | None) -> list[str]:
    if not by_priority:
        return []
    lines = ["By priority:"]
    for name in ("critical", "standard", "batch"):
        if name in by_priority:
            c = by_priority[name]
            lines.append(
                f"  {name:<9} {c['total_requests']:>7} requests  "
                f"ok {c['success_rate_percent']:6.2f}%  "
                f"rejected {c['rejection_rate_percent']:6.2f}%  "
                f"p99 ok {c['success_latency_ms']['p99']:.1f} ms"
            )
    return lines


def _open_loop_lines(open_loop: dict[str, Any] | None) -> list[str]:
    if not open_loop:
        return []
    raw = open_loop["uncorrected_latency_ms"]
    lines = [
        f"Arrival rate:     target {open_loop['target_rate']:g}/s ({open_loop['arrivals']}), "
        f"achieved {open_loop['achieved_rate']:.1f}/s, worst lag {open_loop['max_lag_ms']:.1f} ms",
        f"Uncorrected (ms): median {raw['median']:.1f}  p99 {raw['p99']:.1f}  max {raw['max']:.1f}"
        "  (from actual send; the figures above are from intended send)",
    ]
    if not open_loop["schedule_kept"]:
        lines.append(
            "WARNING: the generator could not keep the schedule; the server (or this machine) "
            "could not absorb the target rate with the given --concurrency connections"
        )
    return lines


def summary_table(results: list[dict[str, Any]]) -> Table:
    table = Table(title="Comparison", title_justify="left")
    for column in (
        "pattern",
        "req/s",
        "goodput/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
        "errors %",
        "rejected %",
        "p99 ok ms",
    ):
        table.add_column(column, justify="left" if column == "pattern" else "right")
    for r in results:
        lat = r["latency_ms"]
        table.add_row(
            str(r["pattern"]),
            f"{r['requests_per_second']:.1f}",
            f"{r['goodput_per_second']:.1f}",
            f"{lat['median']:.1f}",
            f"{lat['p95']:.1f}",
            f"{lat['p99']:.1f}",
            f"{lat['max']:.1f}",
            f"{r['error_rate_percent']:.2f}",
            f"{r['rejection_rate_percent']:.2f}",
            f"{r['success_latency_ms']['p99']:.1f}",
        )
    return table


def winner_lines(results: list[dict[str, Any]]) -> list[str]:
    verdict = choose_winner(results)
    if verdict is None:
        return []
    lines = [f"Winner: {verdict.winner}: {verdict.reason}"]
    for other, ratio in verdict.ratios.items():
        goodput = f"{ratio['goodput']:.2f}x its goodput" if ratio["goodput"] else "goodput n/a"
        lines.append(f"  vs {other}: {goodput}, {_p99_phrase(ratio['p99'])}")
    return lines


def _p99_phrase(ratio: float | None) -> str:
    """`ratio` is the other pattern's p99 of successes over the winner's."""
    if not ratio:
        return "p99 n/a"
    if ratio >= 1:
        return f"{ratio:.2f}x lower p99"
    return f"but {1 / ratio:.2f}x higher p99"


#: Runs shorter than this give rates too noisy to compare (e.g. a closed-loop request budget
#: burnt through by fast rejections).
MIN_TRUSTED_SECONDS = 2.0


def short_run_warning(results: list[dict[str, Any]]) -> str | None:
    short = [r["pattern"] for r in results if r["duration_seconds"] < MIN_TRUSTED_SECONDS]
    if not short:
        return None
    return (
        f"WARNING: {', '.join(short)} ran for under {MIN_TRUSTED_SECONDS:g} s (fast rejections "
        "use up --requests quickly): rates this short are noisy; compare with --duration instead"
    )


def print_report(results: list[dict[str, Any]], console: Console) -> None:
    for result in results:
        console.print(detail_block(result), highlight=False)
        console.print()
    if len(results) > 1:
        console.print(summary_table(results))
    for line in winner_lines(results):
        console.print(line, highlight=False)
    warning = short_run_warning(results)
    if warning:
        console.print(warning, highlight=False)
    affinity = results[0].get("affinity") if results else None
    if affinity and affinity.get("server"):
        console.print(
            f"CPUs: server on {affinity['server']}, load generator on {affinity['loadgen']}",
            highlight=False,
        )


class BarProgress:
    """A rich progress bar on stderr, one task per run."""

    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed:.0f}/{task.total:.0f}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self._task: TaskID | None = None

    def begin(self, label: str, total: float) -> None:
        self._progress.start()
        self._task = self._progress.add_task(label, total=total)

    def update(self, completed: float) -> None:
        if self._task is not None:
            self._progress.update(self._task, completed=completed)

    def end(self) -> None:
        if self._task is not None:
            self._progress.remove_task(self._task)
            self._task = None
        self._progress.stop()
