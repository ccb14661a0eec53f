"""Terminal output: the reference's per-pattern block, a summary table and the winner."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from carebench.loadgen.results import (
    GeneratorRun,
    LoadTestResult,
    OpenLoopReport,
    PriorityClassResult,
)
from carebench.loadgen.sampler import restarts_during
from carebench.report.compare import choose_winner
from carebench.report.faults import fault_lines, recovery_lines


def detail_block(result: LoadTestResult) -> str:
    """The reference's result block for one pattern, goodput first, plus the rejection latency."""
    lat = result["latency_ms"]
    lines = [
        f"=== {result['pattern']} ({result['mode']}, {result['loop']} loop) ===",
        f"Total requests:   {result['total_requests']}",
        f"Successful:       {result['success_requests']}",
        f"Errors:           {result['error_requests']}  {_breakdown(result)}",
        f"Rejected:         {result['rejected_requests']}",
        f"Duration:         {result['duration_seconds']:.2f}s",
        f"Goodput:          {result['goodput_per_second']:.1f} successful req/s "
        f"(p99 {result['success_latency_ms']['p99']:.1f} ms)",
        f"Attempts:         {result['requests_per_second']:.1f} req/s "
        "(every request sent, rejected ones included)",
        f"Latency (ms):     min {lat['min']:.1f}  mean {lat['mean']:.1f}  "
        f"median {lat['median']:.1f}  p95 {lat['p95']:.1f}  p99 {lat['p99']:.1f}  "
        f"max {lat['max']:.1f}",
        f"Error rate:       {result['error_rate_percent']:.2f}%",
        f"Rejection rate:   {result['rejection_rate_percent']:.2f}%",
    ]
    if result["rejected_requests"]:
        rej = result["rejection_latency_ms"]
        lines.append(f"Rejected in (ms): median {rej['median']:.2f}  p99 {rej['p99']:.2f}")
    lines.extend(_open_loop_lines(result["open_loop"]))
    lines.extend(_priority_lines(result["by_priority"]))
    lines.extend(fault_lines(result))
    lines.extend(_restart_lines(result))
    if result["interrupted"]:
        lines.append("(interrupted: partial results)")
    return "\n".join(lines)


def _breakdown(result: LoadTestResult) -> str:
    outcomes = result["outcomes"]
    parts = [
        f"{name.replace('_', ' ')} {count}"
        for name, count in (
            ("backend_error", outcomes["backend_error"]),
            ("timeout", outcomes["timeout"]),
            ("client_error", outcomes["client_error"]),
            ("connection_error", outcomes["connection_error"]),
        )
        if count
    ]
    return f"({', '.join(parts)})" if parts else ""


def _priority_lines(by_priority: dict[str, PriorityClassResult] | None) -> list[str]:
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


def _restart_lines(result: LoadTestResult) -> list[str]:
    """`serve --processes N`: how many processes the server replaced during the run (a
    warning under the report says which runs lost one)."""
    restarts = restarts_during(result["server_samples"], result["server_metrics"])
    if restarts is None:
        return []
    replaced = restarts["during_run"]
    return [
        f"Restarts:         {replaced} server process{'' if replaced == 1 else 'es'} replaced "
        f"during the run (processes_restarted {restarts['at_start']} -> {restarts['at_end']})"
    ]


def _open_loop_lines(open_loop: OpenLoopReport | None) -> list[str]:
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


@dataclass(frozen=True, slots=True)
class Column:
    """One column of the comparison table: its header and how a result fills it."""

    header: str
    cell: Callable[[LoadTestResult], str]


#: The comparison's columns. The first two decide the winner (compare.choose_winner), so they
#: come first; raw attempts and the latency of every response (fast refusals included) follow.
COLUMNS = (
    Column("pattern", lambda r: r["pattern"]),
    Column("goodput/s", lambda r: f"{r['goodput_per_second']:.1f}"),
    Column("p99 ok ms", lambda r: f"{r['success_latency_ms']['p99']:.1f}"),
    Column("attempts/s", lambda r: f"{r['requests_per_second']:.1f}"),
    Column("rejected %", lambda r: f"{r['rejection_rate_percent']:.2f}"),
    Column("errors %", lambda r: f"{r['error_rate_percent']:.2f}"),
    Column("p50 all ms", lambda r: f"{r['latency_ms']['median']:.1f}"),
    Column("p95 all ms", lambda r: f"{r['latency_ms']['p95']:.1f}"),
    Column("p99 all ms", lambda r: f"{r['latency_ms']['p99']:.1f}"),
    Column("max all ms", lambda r: f"{r['latency_ms']['max']:.1f}"),
)
#: What the columns mean, printed under the table.
LEGEND = (
    "goodput/s: successful responses per second; p99 ok: the p99 latency of those successes. "
    "The winner has the most goodput, near-ties going to the lower p99 ok. attempts/s counts "
    "every request sent, refused ones included; 'all' latencies include the fast refusals."
)


def summary_table(results: Sequence[LoadTestResult]) -> Table:
    table = Table(title="Comparison", title_justify="left")
    for column in COLUMNS:
        table.add_column(column.header, justify="left" if column is COLUMNS[0] else "right")
    for result in results:
        table.add_row(*(column.cell(result) for column in COLUMNS))
    return table


def winner_lines(results: Sequence[LoadTestResult]) -> list[str]:
    verdict = choose_winner(results)
    if verdict is None:
        return []
    lines = [f"Winner: {verdict.winner}: {verdict.reason}"]
    for rival in verdict.rivals:
        goodput = (
            f"{rival.goodput_ratio:.2f}x its goodput" if rival.goodput_ratio else "goodput n/a"
        )
        lines.append(f"  vs {rival.pattern}: {goodput}, {_p99_phrase(rival.p99_ratio)}")
    return lines


def _p99_phrase(ratio: float | None) -> str:
    """`ratio` is the other pattern's p99 of successes over the winner's."""
    if not ratio:
        return "p99 n/a"
    if ratio >= 1:
        return f"{ratio:.2f}x lower p99"
    return f"but {1 / ratio:.2f}x higher p99"


def load_line(result: LoadTestResult) -> str:
    """The load a run applied, in one line: loop, clients or rate, how long, against what."""
    config = result["config"]
    if result["loop"] == "open":
        load = (
            f"open loop, {config['rate']:g} arrivals/s ({config['arrivals']}) over at most "
            f"{config['concurrency']} connections"
        )
    elif config["honor_retry_after"]:
        load = f"closed loop, {config['concurrency']} clients honouring Retry-After"
    else:
        load = f"closed loop, {config['concurrency']} clients re-sending refused requests at once"
    if config["duration"] is not None:
        load += f", {config['duration']:g} s"
    else:
        load += f", {config['requests']} requests"
    if config["warmup"]:
        load += f" after a {config['warmup']:g} s warm-up"
    return f"load: {load}; {_destination(result)}"


def _destination(result: LoadTestResult) -> str:
    """Where the load went: a server per pattern, in-process, or a target; and the database."""
    if result["mode"] == "target":
        where = f"against {result['target']}"
    elif result["mode"] == "inprocess":
        where = "in-process (no HTTP)"
    else:
        where = "a server per pattern over HTTP"
    backend: dict[str, Any] = (result["server_metrics"] or {}).get("backend") or {}
    if backend.get("backend") == "simulator":
        pool = backend.get("pool_size")
        size = f", pool of {pool}" if pool else ""
        where += f", simulated database ({backend.get('profile')}{size})"
    elif backend.get("backend"):
        where += f", {backend['backend']} database"
    return where


#: Runs shorter than this give rates too noisy to compare (e.g. a closed-loop request budget
#: burnt through by fast rejections).
MIN_TRUSTED_SECONDS = 2.0
#: A closed loop in which a pattern refused more than this share of attempts was mostly
#: measuring how fast clients re-send, unless they honoured Retry-After.
STORM_REJECTION_PERCENT = 50.0


def short_run_warning(results: Sequence[LoadTestResult]) -> str | None:
    short = [r["pattern"] for r in results if r["duration_seconds"] < MIN_TRUSTED_SECONDS]
    if not short:
        return None
    return (
        f"WARNING: {', '.join(short)} ran for under {MIN_TRUSTED_SECONDS:g} s (fast rejections "
        "use up --requests quickly): rates this short are noisy; compare with --duration instead"
    )


def restarts_warning(results: Sequence[LoadTestResult]) -> str | None:
    """Runs during which the server replaced a process that died: their figures have a gap."""
    lost = [
        r["pattern"]
        for r in results
        if (restarts := restarts_during(r["server_samples"], r["server_metrics"]))
        and restarts["during_run"]
    ]
    if not lost:
        return None
    return (
        f"WARNING: server processes died and were replaced during the run of {', '.join(lost)} "
        "(Restarts above): the requests they held failed or were reset and their counts are "
        "gone from the server's totals; rerun before comparing"
    )


def rejection_storm_note(results: Sequence[LoadTestResult]) -> str | None:
    """Closed-loop clients that re-send refusals at once turn shedding into a storm of
    attempts: say so, so that nobody reads attempts/s as capacity."""
    storms = [
        r["pattern"]
        for r in results
        if r["loop"] == "closed"
        and not r["config"]["honor_retry_after"]
        and r["rejection_rate_percent"] > STORM_REJECTION_PERCENT
    ]
    if not storms:
        return None
    return (
        f"NOTE: {', '.join(storms)} refused most attempts and the clients re-sent them at once, "
        "so attempts/s measures that storm, not capacity; compare goodput/s, or rerun with "
        "--honor-retry-after"
    )


def print_report(results: Sequence[LoadTestResult], console: Console) -> None:
    """Each pattern's block, then what load was applied, the comparison and the winner."""
    for result in results:
        console.print(detail_block(result), highlight=False)
        console.print()
    if results:
        console.print(load_line(results[0]), highlight=False)
    if len(results) > 1:
        console.print(summary_table(results))
        console.print(LEGEND, highlight=False)
    for line in winner_lines(results):
        console.print(line, highlight=False)
    for line in recovery_lines(results) if len(results) > 1 else []:
        console.print(line, highlight=False)
    for note in (
        short_run_warning(results),
        restarts_warning(results),
        rejection_storm_note(results),
    ):
        if note:
            console.print(note, highlight=False)
    affinity = results[0].get("affinity") if results else None
    if affinity and affinity["server"]:
        console.print(
            f"CPUs: server on {affinity['server']}, load generator on {affinity['loadgen']}",
            highlight=False,
        )
    runs = results[0].get("generators") if results else None
    if runs:
        console.print(generators_line(runs), highlight=False)


def generators_line(runs: Sequence[GeneratorRun]) -> str:
    """Where each generator process ran and what it did, and which cores they shared."""
    placed = ", ".join(
        f"#{run['index']} on CPU {','.join(map(str, run['cpus'])) or 'any'} "
        f"({run['requests']} requests, {run['cpu_seconds']:.2f} s CPU)"
        for run in runs
    )
    notes = []
    by_cpus = Counter(tuple(run["cpus"]) for run in runs if run["cpus"])
    shared = [",".join(map(str, cpus)) for cpus, count in by_cpus.items() if count > 1]
    if shared:
        notes.append(f"sharing CPU {' and '.join(shared)}: fewer spare cores than generators")
    with_server = [f"#{run['index']}" for run in runs if run["shares_server_core"]]
    if with_server:
        notes.append(f"{', '.join(with_server)} on the server's core")
    if all(run["shares_server_core"] is None for run in runs):
        notes.append("the target's CPUs are unknown")
    merged = f"{len(runs)} generator processes, results merged exactly: {placed}"
    return merged + "".join(f"; {note}" for note in notes)


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
