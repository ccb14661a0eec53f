"""The searches wired to load-test plans, with a fake trial in place of a real run: what each
trial's plan says, what the documents hold, and how results are read."""

from __future__ import annotations

import json

from carebench.loadgen.config import LoadConfig
from carebench.loadgen.runner import RunPlan
from carebench.report.tuning import capacity_lines, capacity_table, tune_lines, tune_table
from carebench.tuning.config import CapacityConfig, TuneConfig
from carebench.tuning.runs import run_capacity, run_tune, trial_metrics
from carebench.tuning.search import TrialMetrics
from tests.report.conftest import make_result


def metrics(p99: float | None, goodput: float) -> TrialMetrics:
    return {
        "goodput_per_second": goodput,
        "percentile_ms": p99,
        "failed_percent": 0.0,
        "backend_error_percent": 0.0,
        "requests": 500,
        "schedule_kept": True,
    }


def semaphore_plan() -> RunPlan:
    return RunPlan(patterns=["semaphore"], load=LoadConfig(duration=1.0), mode="inprocess")


def test_tune_sets_each_candidate_on_the_servers_it_starts() -> None:
    """Every trial's plan carries the candidate as a `carebench serve` flag; the document
    names the best and the flags that set it, and every trial was announced."""
    plans: list[RunPlan] = []
    lines: list[str] = []

    def fake(plan: RunPlan) -> TrialMetrics:
        plans.append(plan)
        limit = plan.setup.patterns.limit
        return metrics(100.0 + 6.0 * limit, goodput=5.0 * min(limit, 40))

    config = TuneConfig(pattern="semaphore", param="limit=5..100", points=6, refine=2)
    document = run_tune(semaphore_plan(), config, 2, lines.append, fake)

    limits = [plan.setup.patterns.limit for plan in plans]
    assert limits[::2] == [5, 9, 17, 30, 55, 100, 12, 23, 20, 26]
    flags = [p.server_args[p.server_args.index("--limit") + 1] for p in plans]
    assert flags == [str(limit) for limit in limits]
    assert document["best_flags"] == ["--limit", "23"]
    assert document["runs"] == 20 == len(lines)
    assert document["max_runs"] == 20
    assert lines[0] == "--limit 5  trial 1/2: goodput 25.0/s, p99 130.0 ms"
    json.dumps(document)  # a JSON document, as --output writes it
    assert any("best: --limit 23: goodput 115.0/s" in line for line in tune_lines(document))
    assert tune_table(document).row_count == 10


def test_tune_without_a_feasible_candidate_says_how_close_it_came() -> None:
    """No candidate meets the target: no best, no flags, and the verdict says so."""
    config = TuneConfig(pattern="semaphore", param="limit=5..20", points=2, refine=0)
    document = run_tune(semaphore_plan(), config, 1, lambda line: None, lambda p: metrics(900.0, 1))

    assert document["best"] is None and document["best_flags"] is None
    assert tune_lines(document)[0].startswith("no candidate meets p99 <= 250 ms")


def test_capacity_probes_each_pattern_at_open_loop_rates() -> None:
    """Each pattern is searched on its own; each trial's plan is an open loop at the probed
    rate; the document holds the probes, the capacity and the p99 there."""
    seen: list[tuple[str, float | None]] = []
    limits = {"semaphore": 120.0, "workerpool": 300.0}

    def fake(plan: RunPlan) -> TrialMetrics:
        (name,) = plan.patterns
        rate = plan.load.rate
        assert rate is not None and plan.load.loop == "open"
        seen.append((name, rate))
        return metrics(100.0 if rate <= limits[name] else 900.0, goodput=rate)

    plan = RunPlan(patterns=["semaphore", "workerpool"], load=LoadConfig(rate=50, duration=1))
    config = CapacityConfig(slo="p99<250ms", precision=10.0)
    document = run_capacity(plan, config, 2, lambda line: None, fake)

    by_name = {result["pattern"]: result for result in document["patterns"]}
    assert by_name["semaphore"]["capacity_per_second"] == 118.75
    assert by_name["workerpool"]["capacity_per_second"] == 300.0
    assert by_name["workerpool"]["percentile_ms_at_capacity"] == 100.0
    assert [rate for name, rate in seen if name == "semaphore"][:4] == [50, 50, 100, 100]
    assert by_name["semaphore"]["runs"] == sum(1 for name, _ in seen if name == "semaphore")
    assert "all 2 of its trials" in document["rule"]
    assert capacity_table(document).row_count == 2
    assert "at most 1% of requests refused or late" in capacity_lines(document)[0]
    json.dumps(document)


def test_trial_metrics_read_goodput_the_percentile_and_failures() -> None:
    """Failed counts the refused and late requests, the database's errors apart; the
    percentile is of successes."""
    result = make_result(
        "semaphore", rps=100.0, p99=80.0, total=200,
        outcomes={"success": 150, "rejected": 40, "backend_error": 10},
    )  # fmt: skip

    read = trial_metrics(result, "p95")

    assert read["failed_percent"] == 20.0
    assert read["backend_error_percent"] == 5.0
    assert read["percentile_ms"] == 72.0
    assert read["goodput_per_second"] == 75.0
    assert read["schedule_kept"] is None
    nothing = make_result("semaphore", total=10, outcomes={"success": 0, "rejected": 10})
    assert trial_metrics(nothing)["percentile_ms"] is None
