"""The searches run for real: every trial is one `run_plan` (a fresh server, or a fresh
in-process pattern), the same load test `carebench loadtest` runs."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import cast

from carebench.loadgen.machine import describe_machine
from carebench.loadgen.results import LoadTestResult
from carebench.loadgen.runner import RunPlan, run_plan
from carebench.tuning.config import PERCENTILES, CapacityConfig, Parameter, TuneConfig
from carebench.tuning.documents import (
    TUNING_SCHEMA_VERSION,
    CapacityDocument,
    PatternCapacity,
    ScenarioReport,
    TuneDocument,
)
from carebench.tuning.search import (
    GOODPUT_TIE,
    Phase,
    Probe,
    Slo,
    TrialMetrics,
    probe_rate,
    search_capacity,
    search_setting,
)

#: Receives one line per finished trial (the CLI prints them to stderr).
Announce = Callable[[str], None]


def trial_metrics(result: LoadTestResult, percentile: str = "p99") -> TrialMetrics:
    """What a search reads from one load test; `percentile` is a LatencySummary key."""
    total = result["total_requests"]
    successes = result["success_requests"]
    open_loop = result["open_loop"]
    backend_errors = result["outcomes"]["backend_error"]
    summary = cast("Mapping[str, float]", result["success_latency_ms"])
    return {
        "goodput_per_second": result["goodput_per_second"],
        "percentile_ms": summary[percentile] if successes else None,
        "failed_percent": _percent(total - successes - backend_errors, total),
        "backend_error_percent": _percent(backend_errors, total),
        "requests": total,
        "schedule_kept": open_loop["schedule_kept"] if open_loop else None,
    }


def _percent(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 3) if whole else 0.0


def run_trial(plan: RunPlan, percentile: str = "p99") -> TrialMetrics:
    """One load test of the plan's single pattern; an interrupted run ends the search."""
    results = run_plan(plan)
    if not results or results[0]["interrupted"]:
        raise KeyboardInterrupt
    return trial_metrics(results[0], percentile)


def with_value(plan: RunPlan, parameter: Parameter, value: float) -> RunPlan:
    """`plan` with the tuned pattern setting at `value`."""
    patterns = parameter.config(plan.setup.patterns, value)
    return dataclasses.replace(plan, setup=dataclasses.replace(plan.setup, patterns=patterns))


def at_rate(plan: RunPlan, rate: float) -> RunPlan:
    """`plan` as an open loop at `rate` arrivals per second."""
    return dataclasses.replace(plan, load=dataclasses.replace(plan.load, rate=rate))


def scenario(plan: RunPlan, trials: int) -> ScenarioReport:
    load = plan.load
    return {
        "mode": plan.mode,
        "loop": load.loop,
        "concurrency": load.concurrency,
        "rate": load.rate,
        "duration_seconds": load.duration or 0.0,
        "warmup_seconds": load.warmup,
        "trials": trials,
        "server_args": plan.server_args,
    }


def tune_max_runs(config: TuneConfig, trials: int) -> int:
    return config.grid.max_candidates * trials


def run_tune(
    plan: RunPlan,
    config: TuneConfig,
    trials: int,
    announce: Announce,
    trial: Callable[[RunPlan], TrialMetrics] = run_trial,
) -> TuneDocument:
    """Search `config.parameter` for the plan's pattern; `trial` runs one load test."""
    parameter = config.parameter
    runs = 0

    def run_trials(value: float) -> list[TrialMetrics]:
        nonlocal runs
        measured = []
        for index in range(trials):
            measured.append(trial(with_value(plan, parameter, value)))
            runs += 1
            announce(_tune_line(parameter, value, index, trials, measured[-1]))
        return measured

    outcome = search_setting(config.grid, run_trials, config.p99 * 1000.0)
    best = outcome.best
    return {
        "schema_version": TUNING_SCHEMA_VERSION,
        "kind": "tune",
        "pattern": plan.patterns[0],
        "parameter": {
            "name": parameter.name,
            "flag": parameter.flag,
            "low": parameter.low,
            "high": parameter.high,
        },
        "target_p99_ms": config.p99 * 1000.0,
        "rule": TUNE_RULE,
        "scenario": scenario(plan, trials),
        "max_runs": tune_max_runs(config, trials),
        "runs": runs,
        "candidates": outcome.candidates,
        "best": best,
        "best_flags": [parameter.flag, parameter.show(best["value"])] if best else None,
        "machine": describe_machine(),
    }


TUNE_RULE = (
    "among candidates whose median p99 of successes meets the target, the most goodput "
    f"(median over the trials); within {GOODPUT_TIE:.0%} of it, the lowest median p99"
)


def _tune_line(
    parameter: Parameter, value: float, index: int, trials: int, metrics: TrialMetrics
) -> str:
    return (
        f"{parameter.flag} {parameter.show(value)}  trial {index + 1}/{trials}: "
        f"goodput {metrics['goodput_per_second']:.1f}/s, p99 {_ms(metrics['percentile_ms'])}"
    )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def capacity_rule(trials: int) -> str:
    return (
        f"a rate passes when all {trials} of its trials meet the SLO (the first trial that "
        "misses ends the probe); a trial whose load generator fell behind its schedule misses"
    )


def run_capacity(
    plan: RunPlan,
    config: CapacityConfig,
    trials: int,
    announce: Announce,
    trial: Callable[[RunPlan], TrialMetrics] | None = None,
) -> CapacityDocument:
    """Each of the plan's patterns' capacity; `trial` runs one load test (default: run_trial
    judging the SLO's percentile)."""
    slo = config.objective
    key = PERCENTILES[slo.percentile]
    run = trial or (lambda one: run_trial(one, key))
    patterns = [
        _pattern_capacity(
            dataclasses.replace(plan, patterns=[name]), config, slo, trials, run, announce
        )
        for name in plan.patterns
    ]
    return {
        "schema_version": TUNING_SCHEMA_VERSION,
        "kind": "capacity",
        "slo": {
            "text": config.slo,
            "percentile": slo.percentile,
            "threshold_ms": slo.threshold_ms,
            "max_failed_percent": slo.max_failed_percent,
        },
        "rule": capacity_rule(trials),
        "precision_percent": config.precision,
        "start_rate": config.start_rate,
        "max_rate": config.max_rate,
        "max_probes": config.search.max_probes,
        "scenario": scenario(plan, trials),
        "patterns": patterns,
        "machine": describe_machine(),
    }


def _pattern_capacity(
    plan: RunPlan,
    config: CapacityConfig,
    slo: Slo,
    trials: int,
    run: Callable[[RunPlan], TrialMetrics],
    announce: Announce,
) -> PatternCapacity:
    name = plan.patterns[0]

    def one_trial(rate: float) -> TrialMetrics:
        metrics = run(at_rate(plan, rate))
        verdict = slo.violation(metrics) or "ok"
        announce(
            f"{name} {rate:g}/s: {slo.percentile} {_ms(metrics['percentile_ms'])}, "
            f"{metrics['failed_percent']:.2f}% refused or late, "
            f"{metrics['backend_error_percent']:.2f}% database errors -> {verdict}"
        )
        return metrics

    def probe(rate: float, phase: Phase) -> Probe:
        return probe_rate(rate, phase, one_trial, slo, trials)

    found = search_capacity(config.search, probe)
    at_capacity = [p for p in found.probes if p["passed"] and p["rate"] == found.capacity]
    return {
        "pattern": name,
        "capacity_per_second": found.capacity,
        "status": found.status,
        "probes": found.probes,
        "runs": sum(len(p["trials"]) for p in found.probes),
        "percentile_ms_at_capacity": at_capacity[-1]["percentile_ms"] if at_capacity else None,
    }
