"""The terminal report: what decides the winner comes first, and the load applied is stated."""

from __future__ import annotations

import io

from rich.console import Console

from carebench.loadgen.results import LoadTestResult, OpenLoopReport, PriorityClassResult
from carebench.report.terminal import (
    BarProgress,
    detail_block,
    load_line,
    print_report,
    rejection_storm_note,
    summary_table,
    winner_lines,
)
from tests.report.conftest import make_result

#: 1000 attempts/s, 90 % of them refused at once: goodput 100/s.
STORM = make_result("shedder", rps=1000.0, p99=40.0, outcomes={"success": 20, "rejected": 180})


def printed(results: list[LoadTestResult]) -> str:
    console = Console(width=200, record=True, highlight=False)
    print_report(results, console)
    return console.export_text()


def test_table_leads_with_goodput_and_the_p99_of_successes() -> None:
    """Columns: pattern, goodput/s, p99 ok ms, then attempts/s; cells in that order."""
    table = summary_table([STORM])
    headers = [str(column.header) for column in table.columns]
    assert headers[:4] == ["pattern", "goodput/s", "p99 ok ms", "attempts/s"]
    row = [next(iter(column.cells)) for column in table.columns]
    assert row[:5] == ["shedder", "100.0", "40.0", "1000.0", "90.00"]


def test_detail_block_gives_goodput_before_attempts() -> None:
    """The per-pattern block names goodput first and calls the raw rate attempts."""
    block = detail_block(STORM)
    assert "Goodput:          100.0 successful req/s (p99 40.0 ms)" in block
    assert "Attempts:         1000.0 req/s" in block
    assert block.index("Goodput:") < block.index("Attempts:")


def test_load_line_for_a_closed_loop() -> None:
    """Clients, whether they wait on refusals, duration, warm-up, and where the load went."""
    polite = make_result(
        config={
            **make_result()["config"],
            "concurrency": 100,
            "requests": None,
            "duration": 6.0,
            "warmup": 1.0,
            "honor_retry_after": True,
        },
        server_metrics={
            "backend": {"backend": "simulator", "profile": "realistic", "pool_size": 10}
        },
    )
    assert load_line(polite) == (
        "load: closed loop, 100 clients honouring Retry-After, 6 s after a 1 s warm-up; "
        "a server per pattern over HTTP, simulated database (realistic, pool of 10)"
    )
    eager = make_result(mode="inprocess")
    assert load_line(eager) == (
        "load: closed loop, 10 clients re-sending refused requests at once, 200 requests; "
        "in-process (no HTTP)"
    )


def test_load_line_for_an_open_loop() -> None:
    """An open loop states its arrival rate and the connections it may use."""
    config = {**make_result()["config"], "rate": 250.0, "arrivals": "poisson", "duration": 10.0}
    result = make_result(loop="open", mode="target", target="http://api:8000", config=config)
    assert load_line(result) == (
        "load: open loop, 250 arrivals/s (poisson) over at most 10 connections, 10 s; "
        "against http://api:8000"
    )


def test_rejection_storm_is_pointed_out_unless_clients_wait() -> None:
    """Most attempts refused and re-sent at once: a note says attempts/s is not capacity."""
    note = rejection_storm_note([make_result("calm"), STORM])
    assert note is not None and note.startswith("NOTE: shedder refused most attempts")
    waited = make_result(
        "shedder",
        outcomes={"success": 20, "rejected": 180},
        config={**make_result()["config"], "honor_retry_after": True},
    )
    assert rejection_storm_note([waited]) is None


def test_report_states_the_load_then_the_table_then_the_winner() -> None:
    """The load line precedes the comparison, which precedes the legend and the winner."""
    text = printed([make_result("a", rps=50.0), STORM])
    order = [text.index(mark) for mark in ("load: ", "Comparison", "goodput/s:", "Winner: ")]
    assert order == sorted(order)
    assert "Winner: shedder" in text
    assert "NOTE: shedder" in text


def test_detail_block_reports_the_schedule_and_the_classes() -> None:
    """Open-loop runs show the arrival rate kept (or a warning); --priorities runs each class."""
    lag = make_result()["latency_ms"]
    open_loop: OpenLoopReport = {
        "target_rate": 200.0,
        "arrivals": "constant",
        "scheduled_requests": 2000,
        "achieved_rate": 150.0,
        "max_lag_ms": 80.0,
        "schedule_kept": False,
        "corrected": "latency_ms is measured from each request's intended send time",
        "uncorrected_latency_ms": lag,
    }
    critical: PriorityClassResult = {
        "total_requests": 10,
        "outcomes": make_result()["outcomes"],
        "success_rate_percent": 90.0,
        "rejection_rate_percent": 10.0,
        "success_latency_ms": lag,
    }
    block = detail_block(
        make_result(open_loop=open_loop, by_priority={"critical": critical}, interrupted=True)
    )
    assert "Arrival rate:     target 200/s (constant), achieved 150.0/s" in block
    assert "WARNING: the generator could not keep the schedule" in block
    assert "  critical       10 requests  ok  90.00%  rejected  10.00%  p99 ok 50.0 ms" in block
    assert block.endswith("(interrupted: partial results)")


def test_report_warns_of_short_runs_and_names_the_cpus() -> None:
    """A run under 2 s is flagged as noisy; pinned CPUs are listed at the end."""
    short = make_result("quick", rps=1000.0, affinity={"server": [0], "loadgen": [1, 2]})
    text = printed([short, make_result("slow")])
    assert "WARNING: quick ran for under 2 s" in text
    assert text.rstrip().endswith("CPUs: server on [0], load generator on [1, 2]")


def test_p99_comparison_reads_both_ways() -> None:
    """A rival with no successes has no p99 ratio; a faster rival is said to be faster."""
    fast_rival = make_result("fast", rps=50.0, p99=10.0)
    lines = winner_lines([make_result("a", rps=100.0, p99=50.0), fast_rival])
    assert lines[1] == "  vs fast: 2.00x its goodput, but 5.00x higher p99"
    idle = make_result("idle", p99=0.0, outcomes={"success": 0, "rejected": 200})
    assert winner_lines([make_result("a"), idle])[1] == "  vs idle: goodput n/a, p99 n/a"


def test_progress_bar_tracks_one_run_at_a_time() -> None:
    """The bar gets a task per run, updates it, and removes it at the end."""
    console = Console(file=io.StringIO(), force_terminal=False)
    bar = BarProgress(console)
    bar.begin("workerpool", total=6.0)
    bar.update(3.0)
    assert [task.completed for task in bar._progress.tasks] == [3.0]
    bar.end()
    assert bar._progress.tasks == []
    bar.update(4.0)


def with_restarts(pattern: str, *counts: int) -> LoadTestResult:
    """A run against `serve --processes N` whose restart counter read `counts` (the last at
    the final /metrics)."""
    *sampled, final = counts
    samples = [
        {"t": i / 4, "in_flight": 1, "processes_restarted": c} for i, c in enumerate(sampled)
    ]
    return make_result(
        pattern, server_samples=samples, server_metrics={"processes_restarted": final}
    )


def test_a_run_that_lost_a_server_process_is_flagged() -> None:
    """Restarts during the run are counted in the run's block and warned about under the
    report, naming the run; a run without any is not warned about."""
    text = printed([with_restarts("naive", 0, 0, 1, 1), with_restarts("workerpool", 1, 1, 1)])
    assert "Restarts:         1 server process replaced during the run " in text
    assert "(processes_restarted 0 -> 1)" in text
    assert "Restarts:         0 server processes replaced during the run" in text
    warnings = [line for line in text.splitlines() if "were replaced during the run" in line]
    assert len(warnings) == 1
    assert warnings[0].startswith("WARNING:") and "of naive " in warnings[0]


def test_no_restart_line_without_a_counter() -> None:
    """One server process (no processes_restarted): no Restarts line, no warning."""
    text = printed([make_result("naive")])
    assert "Restarts:" not in text and "replaced during the run" not in text
