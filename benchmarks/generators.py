"""`loadtest --generators 1` against `--generators 2` on one fast target, with each side's CPU.

The target is client_vs_wrk.py's nginx (C, one worker pinned to CPU 0, a fixed JSON body), so
the client side is what is measured. Three sides take turns in alternating rounds, each a real
`carebench loadtest --target URL --concurrency N --duration D` run (`run_plan`, in this process):

- `1 gen`: one generator, the classic in-process engine, pinned to CPU 1;
- `2 gens, CPU 1`: two generator processes both pinned to CPU 1 (the only spare core on a
  2-core machine once nginx has CPU 0): the cost of splitting, at equal CPU;
- `2 gens, CPU 0+1`: one generator on each core, so one shares CPU 0 with nginx: what a second
  core buys when there is none to spare.

CPU per side is taken over the measured window only: the load test's own process (sampling and
merging, or the whole engine with one generator) plus each generator's report of its CPU
(`generators[].cpu_seconds`), and nginx from /proc. The report gives raw req/s and req/s per
core of client CPU used, medians over the rounds, and flags target-bound runs (nginx >= 90 %
of its core), whose raw rate measures nginx, not the generators.

    .venv/bin/python benchmarks/generators.py --duration 8 --runs 5

Needs nginx (Debian: `apt-get install -y nginx`) and CPUs 0 and 1; exits 2 otherwise.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from client_vs_wrk import TARGET_BOUND, _free_port, _machine_report, _Nginx, _which, _Window

from carebench.loadgen.config import LoadConfig
from carebench.loadgen.runner import RunPlan, run_plan

#: Each side: its label, the --generators count, and the CPUs the load test may use.
SIDES = (("1 gen", 1, {1}), ("2 gens, CPU 1", 2, {1}), ("2 gens, CPU 0+1", 2, {0, 1}))


@dataclass(frozen=True, slots=True)
class SideRun:
    """One measured run of one side: its rate and each party's CPU (cores busy on average)."""

    side: str
    rate: float
    errors: int
    client_cpu: float
    target_cpu: float
    placement: str

    @property
    def per_core(self) -> float:
        return self.rate / self.client_cpu if self.client_cpu else 0.0

    @property
    def target_bound(self) -> bool:
        return self.target_cpu >= TARGET_BOUND


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    if _which("nginx") is None:
        print("error: nginx not found; install it (apt-get install -y nginx)", file=sys.stderr)
        return 2
    if not {0, 1} <= os.sched_getaffinity(0):
        print("error: CPUs 0 and 1 must both be usable", file=sys.stderr)
        return 2
    print(_machine_report())
    print(
        "pinning:  nginx on CPU 0; '1 gen' and '2 gens, CPU 1' on CPU 1; '2 gens, CPU 0+1' "
        "one generator per CPU (the one on CPU 0 shares it with nginx)"
    )
    os.sched_setaffinity(0, {1})
    with (
        tempfile.TemporaryDirectory(prefix="carebench-nginx-") as root,
        _Nginx(Path(root), _free_port(), True) as target,
    ):
        runs = _measure(target, args)
    _print_summary(runs)
    return 0


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per run (8)")
    parser.add_argument("--connections", type=int, default=64, help="open connections (64)")
    parser.add_argument("--runs", type=int, default=5, help="rounds (5)")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds (1)")
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.runs < 1 or args.connections < 2 or args.warmup < 0:
        parser.error("--duration and --warmup must be positive, --runs >= 1, --connections >= 2")
    return args


def _measure(target: _Nginx, args: argparse.Namespace) -> list[SideRun]:
    runs: list[SideRun] = []
    for round_ in range(args.runs):
        # Rotate which side goes first so slow drift (neighbours, thermals) is shared.
        order = SIDES[round_ % len(SIDES) :] + SIDES[: round_ % len(SIDES)]
        for side, generators, cpus in order:
            run = _run_side(target, args, side, generators, cpus)
            flag = "  TARGET-BOUND" if run.target_bound else ""
            print(
                f"round {round_ + 1}/{args.runs} {side:>15}: {run.rate:10,.0f} req/s  "
                f"errors {run.errors}  client CPU {run.client_cpu:4.2f} cores "
                f"({run.per_core:,.0f} req/s per core), nginx {run.target_cpu:4.0%}  "
                f"[{run.placement}]{flag}",
                flush=True,
            )
            runs.append(run)
    return runs


def _run_side(
    target: _Nginx, args: argparse.Namespace, side: str, generators: int, cpus: set[int]
) -> SideRun:
    load = LoadConfig(
        concurrency=args.connections,
        duration=args.duration,
        warmup=args.warmup,
        generators=generators,
    )
    window = _Window(target)
    os.sched_setaffinity(0, cpus)
    try:
        plan = RunPlan(patterns=["target"], load=load, mode="target", target=target.url)
        [result] = run_plan(plan, window)
    finally:
        os.sched_setaffinity(0, {1})
    runs = result.get("generators", [])
    measured = result["duration_seconds"]
    # The parent's CPU (all of it with one generator) plus what each generator reported.
    client_cpu = window.tool_cpu + sum(run["cpu_seconds"] for run in runs) / measured
    placement = (
        "; ".join(f"#{run['index']} on CPU {run['cpus']}" for run in runs)
        if runs
        else "in-process on CPU [1]"
    )
    errors = result["total_requests"] - result["success_requests"]
    return SideRun(
        side, result["requests_per_second"], errors, client_cpu, window.target_cpu, placement
    )


def _print_summary(runs: list[SideRun]) -> None:
    print()
    medians: dict[str, tuple[float, float]] = {}
    for side, _, _ in SIDES:
        mine = [run for run in runs if run.side == side]
        rates = [run.rate for run in mine]
        rate = statistics.median(rates)
        per_core = statistics.median(run.per_core for run in mine)
        cpu = statistics.median(run.client_cpu for run in mine)
        nginx = statistics.median(run.target_cpu for run in mine)
        medians[side] = (rate, per_core)
        spread = _spread_warning(rates)
        print(
            f"{side:>15}: median {rate:10,.0f} req/s, client CPU {cpu:4.2f} cores, "
            f"{per_core:10,.0f} req/s per core; nginx {nginx:.0%} "
            f"(raw min {min(rates):,.0f}, max {max(rates):,.0f}, runs {len(rates)}){spread}"
        )
    bound = sum(run.target_bound for run in runs)
    if bound:
        print(
            f"warning: {bound} of {len(runs)} runs were target-bound (nginx >= "
            f"{TARGET_BOUND:.0%} of its core): their raw rates measure nginx"
        )
    base_rate, base_core = medians["1 gen"]
    for side, _, _ in SIDES[1:]:
        rate, per_core = medians[side]
        print(
            f"ratio: {side} / 1 gen = {rate / base_rate:.2f} raw req/s, "
            f"{per_core / base_core:.2f} per core of client CPU"
        )


def _spread_warning(rates: list[float]) -> str:
    # pyperf's thresholds: a wide spread means the medians are not worth comparing.
    mean = statistics.fmean(rates)
    stdev = statistics.stdev(rates) if len(rates) > 1 else 0.0
    wide = stdev >= 0.1 * mean or min(rates) < 0.5 * mean or max(rates) > 1.5 * mean
    return f"  UNSTABLE (stdev {stdev:,.0f})" if wide else ""


if __name__ == "__main__":
    sys.exit(main())
