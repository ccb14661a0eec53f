"""Every pattern against the oracle (issue 13's scenario matrix).

For each database profile x scenario, two things run through the CLI:

* the oracle: `carebench tune --pattern semaphore --param limit=LOW..HIGH` with the scenario's
  flags, whose best static limit (the most goodput whose p99 of successes meets the target)
  is the yardstick;
* every pattern with its defaults: `carebench loadtest --pattern all` with the same flags.

Each cell of the table is the pattern's goodput and p99 of successes as ratios to the
oracle's: goodput >= 0.9 and p99 <= 1.1 is "within 10 %", the issue's goal. The open-loop
rates are multiples of the database's capacity, taken as the most goodput any oracle candidate
reached in the closed-loop scenarios of that database (so those run first).

Raw results go to a JSON file after every scenario, so the matrix can be run in chunks (one
database, or a few scenarios, at a time) and rendered once at the end:

    /tmp/cbtools/quiet .venv/bin/python benchmarks/scenario_matrix.py --databases realistic \\
        --scenarios closed100,closed500
    .venv/bin/python benchmarks/scenario_matrix.py --render-only
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from carebench.loadgen.machine import describe_machine

CAREBENCH = str(Path(sys.executable).with_name("carebench"))
DATABASES = ("realistic", "ideal")
RAW = Path("results/benchmarks/scenario_matrix.json")
OUT = Path("results/benchmarks/scenario_matrix.txt")
#: Within this fraction of the oracle on both goodput and p99 of successes: the issue's goal.
GOAL = 0.10


@dataclass(frozen=True, slots=True)
class Scenario:
    """One column of the matrix: its load flags (rates as multiples of capacity)."""

    name: str
    title: str
    flags: tuple[str, ...]
    capacity_multiple: float | None = None
    faults: str | None = None
    #: The oracle's p99 target; None: the default 250 ms.
    p99_target: str | None = None


SCENARIOS = (
    Scenario("closed100", "closed, 100 clients", ("--concurrency", "100")),
    Scenario(
        "closed500",
        "closed, 500 clients honouring Retry-After",
        ("--concurrency", "500", "--honor-retry-after"),
    ),
    Scenario("open2x", "open loop at 2x capacity", (), capacity_multiple=2.0),
    Scenario("open10x", "open loop at 10x capacity", (), capacity_multiple=10.0),
    Scenario(
        "brownout",
        "brown-out: 5x slower for 10 s, 100 clients honouring Retry-After",
        ("--concurrency", "100", "--honor-retry-after"),
        faults="at 5s slow x5 for 10s",
        p99_target="1000ms",
    ),
)
BY_NAME = {scenario.name: scenario for scenario in SCENARIOS}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--databases", default=",".join(DATABASES))
    parser.add_argument("--scenarios", default=",".join(BY_NAME))
    parser.add_argument("--duration", type=float, default=6.0, help="measured seconds a run")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--brownout-duration", type=float, default=20.0)
    parser.add_argument("--trials", type=int, default=1, help="oracle trials per candidate")
    parser.add_argument("--limits", default="5..500", help="the oracle's semaphore limit range")
    parser.add_argument("--points", type=int, default=5, help="the oracle's coarse grid")
    parser.add_argument("--refine", type=int, default=1, help="the oracle's refine rounds")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--raw", type=Path, default=RAW)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--force", action="store_true", help="rerun cached scenarios")
    parser.add_argument("--render-only", action="store_true")
    args = parser.parse_args(argv)
    for name in args.scenarios.split(","):
        if name not in BY_NAME:
            parser.error(f"unknown scenario {name!r} (choose from {', '.join(BY_NAME)})")
    for name in args.databases.split(","):
        if name not in DATABASES:
            parser.error(f"unknown database {name!r} (choose from {', '.join(DATABASES)})")
    return args


def load_raw(path: Path) -> dict[str, Any]:
    if path.exists():
        raw: dict[str, Any] = json.loads(path.read_text())
        return raw
    return {"runs": {}}


def capacity(raw: dict[str, Any], database: str) -> float:
    """The most goodput any oracle candidate reached in this database's closed loops."""
    runs = [raw["runs"].get(f"{database}/{name}") for name in ("closed100", "closed500")]
    goodputs: list[float] = [
        c["goodput"] for run in runs if run for c in run["oracle"]["candidates"]
    ]
    if not goodputs:
        raise SystemExit(f"error: run {database}'s closed100 or closed500 first (open loops)")
    return max(goodputs)


def scenario_flags(args: argparse.Namespace, scenario: Scenario, rate: float | None) -> list[str]:
    duration = args.brownout_duration if scenario.faults else args.duration
    flags = [*scenario.flags, "--duration", f"{duration:g}", "--warmup", f"{args.warmup:g}"]
    if rate is not None:
        # Enough connections for the rate at a few hundred ms each; the generator reports
        # whether it kept its schedule.
        flags += ["--rate", f"{rate:.0f}", "--concurrency", str(min(4000, max(500, round(rate))))]
    if scenario.faults:
        flags += ["--faults", scenario.faults]
    return [*flags, "--seed", str(args.seed)]


def run_json(command: list[str]) -> Any:
    """Run a carebench command that writes JSON to --output; its stderr goes to ours."""
    with tempfile.TemporaryDirectory() as directory:
        output = Path(directory) / "out.json"
        print("$", " ".join(command[1:]), file=sys.stderr, flush=True)
        subprocess.run([*command, "--output", str(output)], check=True, stdout=subprocess.DEVNULL)
        return json.loads(output.read_text())


def oracle(args: argparse.Namespace, database: str, flags: list[str], p99: str | None) -> Any:
    command = [CAREBENCH, "tune", "--pattern", "semaphore", "--param", f"limit={args.limits}"]
    command += ["--db-profile", database, "--trials", str(args.trials)]
    command += ["--points", str(args.points), "--refine", str(args.refine), *flags]
    if p99:
        command += ["--p99", p99]
    document = run_json(command)
    candidates = [
        {
            "limit": c["value"],
            "goodput": c["goodput"]["median"],
            "p99_ms": c["percentile_ms"]["median"] if c["percentile_ms"] else None,
            "meets_target": c["meets_target"],
        }
        for c in document["candidates"]
    ]
    best = document["best"]
    return {
        "target_p99_ms": document["target_p99_ms"],
        "candidates": candidates,
        "best": None
        if best is None
        else next(c for c in candidates if c["limit"] == best["value"]),
    }


def patterns(database: str, flags: list[str]) -> dict[str, Any]:
    command = [CAREBENCH, "loadtest", "--pattern", "all", "--db-profile", database, *flags]
    results = run_json(command)
    return {
        result["pattern"]: {
            "goodput": result["goodput_per_second"],
            "p99_ms": result["success_latency_ms"]["p99"] if result["success_requests"] else None,
            "rejected_percent": result["rejection_rate_percent"],
            "schedule_kept": (result["open_loop"] or {}).get("schedule_kept"),
            "affinity": result["affinity"],
        }
        for result in results
    }


def run_scenario(args: argparse.Namespace, raw: dict[str, Any], database: str, name: str) -> None:
    scenario = BY_NAME[name]
    rate = None
    if scenario.capacity_multiple is not None:
        rate = scenario.capacity_multiple * capacity(raw, database)
    flags = scenario_flags(args, scenario, rate)
    started = time.monotonic()
    raw["runs"][f"{database}/{name}"] = {
        "database": database,
        "scenario": name,
        "flags": flags,
        "rate": rate,
        "oracle": oracle(args, database, flags, scenario.p99_target),
        "patterns": patterns(database, flags),
        "seconds": round(time.monotonic() - started, 1),
        "date": describe_machine()["date"],
    }


def ratios(pattern: dict[str, Any], best: dict[str, Any] | None) -> tuple[float, float] | None:
    """(goodput, p99) as ratios to the oracle's best; None without a best or a p99."""
    if best is None or pattern["p99_ms"] is None or not best["goodput"] or not best["p99_ms"]:
        return None
    return pattern["goodput"] / best["goodput"], pattern["p99_ms"] / best["p99_ms"]


def shortfall(pair: tuple[float, float]) -> float:
    """How far from the oracle, as the worse of lost goodput and extra p99 (0: as good)."""
    goodput, p99 = pair
    return max(0.0, 1.0 - goodput, p99 - 1.0)


def cell(pattern: dict[str, Any], best: dict[str, Any] | None) -> str:
    lag = " ~" if pattern["schedule_kept"] is False else ""
    if pattern["p99_ms"] is None:
        return f"no successes{lag}"
    pair = ratios(pattern, best)
    if pair is None:  # no oracle to compare with: the pattern's own numbers
        return f"{pattern['goodput']:.0f}/s, {pattern['p99_ms']:.0f} ms{lag}"
    mark = " *" if shortfall(pair) <= GOAL else ""
    return f"{pair[0]:.2f} / {pair[1]:.2f}{mark}{lag}"


def oracle_cell(run: dict[str, Any]) -> str:
    best = run["oracle"]["best"]
    if best is None:
        return "none met the target"
    return f"{best['limit']:g}: {best['goodput']:.0f}/s, {best['p99_ms']:.0f} ms"


def worst_shortfall(name: str, runs: list[dict[str, Any]]) -> float | None:
    """The largest shortfall over the scenarios that have an oracle; None if there are none
    (a pattern with no successes where the oracle had some falls short by 100 %)."""
    shortfalls = []
    for run in runs:
        best, pattern = run["oracle"]["best"], run["patterns"][name]
        if best is None:
            continue
        pair = ratios(pattern, best)
        shortfalls.append(1.0 if pair is None else shortfall(pair))
    return max(shortfalls) if shortfalls else None


def summary(runs: list[dict[str, Any]], names: list[str]) -> str:
    """Which patterns are within the goal everywhere, else the closest one."""
    judged = [run for run in runs if run["oracle"]["best"] is not None]
    worst = {name: worst_shortfall(name, judged) or 0.0 for name in names}
    where = f"every scenario with an oracle ({len(judged)} of {len(runs)})"
    within = [name for name, value in worst.items() if value <= GOAL]
    if within:
        return f"Within {GOAL:.0%} of the oracle in {where}: {', '.join(within)}."
    closest = min(worst, key=lambda name: worst[name])
    return (
        f"Within {GOAL:.0%} of the oracle in {where}: none; closest: {closest} "
        f"(worst shortfall {worst[closest]:.0%})."
    )


def table(raw: dict[str, Any], database: str) -> list[str]:
    runs = [
        raw["runs"][f"{database}/{s.name}"]
        for s in SCENARIOS
        if f"{database}/{s.name}" in raw["runs"]
    ]
    if not runs:
        return []
    titles = [BY_NAME[run["scenario"]].title for run in runs]
    lines = [f"### {database} database", ""]
    lines.append("| pattern | " + " | ".join(titles) + " | worst shortfall |")
    lines.append("| --- |" + " ---: |" * (len(runs) + 1))
    lines.append(
        "| oracle: semaphore --limit | " + " | ".join(oracle_cell(r) for r in runs) + " | |"
    )
    names = list(runs[0]["patterns"])
    for name in names:
        cells = [cell(run["patterns"][name], run["oracle"]["best"]) for run in runs]
        worst = worst_shortfall(name, runs)
        worst_text = "n/a" if worst is None else f"{worst:.0%}"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {worst_text} |")
    lines += ["", summary(runs, names)]
    rates = [f"{run['scenario']} {run['rate']:.0f}/s" for run in runs if run["rate"]]
    if rates:
        lines.append(f"Open-loop rates: {', '.join(rates)}.")
    return [*lines, ""]


def render(raw: dict[str, Any]) -> str:
    """The matrix as text: a header, then one markdown table per database."""
    settings, machine = raw["settings"], raw["machine"]
    dates = [run["date"] for run in raw["runs"].values()]
    affinity = next(iter(next(iter(raw["runs"].values()))["patterns"].values()))["affinity"]
    header = [
        f"- machine: {machine['cpu_model']}, {machine['cores']} vCPUs (shared), "
        f"Python {machine['python']}, {machine['os']}",
        f"- commit: {raw['commit']} (HEAD when the last chunk started; the shared tree also held "
        f"other sessions' uncommitted edits); scenarios finished between {min(dates)} and "
        f"{max(dates)}",
        f"- pinning: server on CPU {affinity['server']}, "
        f"load generator on CPU {affinity['loadgen']} (taskset)",
        "- alongside: each chunk ran under /tmp/cbtools/quiet (no other heavy job: tests, "
        "servers, load; other sessions' light commands may have run), others' tests between",
        f"- runs: {settings['duration']:g} s measured after {settings['warmup']:g} s of warm-up "
        f"(brown-out: {settings['brownout_duration']:g} s), one run per pattern with its "
        f"defaults, --seed {settings['seed']}",
        f"- oracle: `carebench tune --pattern semaphore --param limit={settings['limits']} "
        f"--points {settings['points']} --refine {settings['refine']} --trials "
        f"{settings['trials']}` with the scenario's flags; target p99 of successes 250 ms "
        "(brown-out: 1000 ms)",
        "- capacity (for the open-loop rates): the most goodput any oracle candidate reached "
        "in the database's closed-loop scenarios",
        "- cell: goodput / p99 of successes, each as a ratio to the oracle's best; "
        f"`*` within {GOAL:.0%} on both (goodput >= {1 - GOAL:.2f}, p99 <= {1 + GOAL:.2f}); "
        "`~` the load generator fell behind its schedule",
        "- worst shortfall: the largest of (1 - goodput ratio) and (p99 ratio - 1) over the row",
        "",
    ]
    body = [line for database in DATABASES for line in table(raw, database)]
    return "\n".join(header + body).rstrip() + "\n"


def commit() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    )
    return done.stdout.strip() or "unknown"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raw = load_raw(args.raw)
    if not args.render_only:
        raw["settings"] = {
            "duration": args.duration,
            "warmup": args.warmup,
            "brownout_duration": args.brownout_duration,
            "trials": args.trials,
            "limits": args.limits,
            "points": args.points,
            "refine": args.refine,
            "seed": args.seed,
        }
        raw["machine"], raw["commit"] = describe_machine(), commit()
        for database in args.databases.split(","):
            for name in args.scenarios.split(","):
                if f"{database}/{name}" in raw["runs"] and not args.force:
                    continue
                run_scenario(args, raw, database, name)
                args.raw.parent.mkdir(parents=True, exist_ok=True)
                args.raw.write_text(json.dumps(raw, indent=1) + "\n")
    args.out.write_text(render(raw))
    print(args.out.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
