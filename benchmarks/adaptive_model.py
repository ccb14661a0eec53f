"""Why adaptive's p99 grows: carebench's limit algorithms in a model of the closed loop.

A discrete-event model, no server and no sockets, of what `carebench loadtest --concurrency N`
does to the adaptive pattern on the realistic simulated database: N clients re-send a refused
request at once, so whatever the limit admits is in flight; each admitted query takes
uniform(50, 100) ms x the USL slowdown for the queries active when it starts (sigma 0.03,
kappa 0.001, as `--db-profile realistic`) and fails 5 % of the time. The algorithms are
carebench's own classes (src/carebench/limits/), fed as the pattern feeds them (every answered
request; database errors not at all) or, with `--window`, as Netflix's WindowedLimit feeds its
delegate (once per window of at least 10 samples: the window's mean RTT, its most in flight
and whether any was dropped).

    .venv/bin/python benchmarks/adaptive_model.py --seconds 10 30 300 --window 0 1

Prints goodput, p99 of successes and the limit (median and most) over the run after 2 s.
"""

from __future__ import annotations

import argparse
import heapq
import random
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

from carebench.limits.base import LimitAlgorithm, create_limit

Feed = Callable[[float, float, int], None]


def usl(active: int, ideal: bool) -> float:
    """The realistic simulator's slowdown with `active` queries running (1 when ideal)."""
    if ideal or active <= 1:
        return 1.0
    return 1.0 + 0.03 * (active - 1) + 0.001 * active * (active - 1)


@dataclass
class Window:
    """Netflix's WindowedLimit in front of `algorithm`: one sample per window."""

    algorithm: LimitAlgorithm
    seconds: float
    ends: float = 0.0
    rtts: list[float] = field(default_factory=list)
    most_in_flight: int = 0

    def __call__(self, now: float, rtt: float, in_flight: int) -> None:
        self.rtts.append(rtt)
        self.most_in_flight = max(self.most_in_flight, in_flight)
        if now <= self.ends:
            return
        self.ends = now + self.seconds
        if len(self.rtts) >= 10:
            self.algorithm.on_sample(statistics.fmean(self.rtts), self.most_in_flight, False)
        self.rtts, self.most_in_flight = [], 0


def with_settings(name: str, settings: list[str]) -> LimitAlgorithm:
    """A new algorithm `name` with FIELD=VALUE overrides of its defaults (numbers)."""
    overrides = {}
    for setting in settings:
        field_name, _, value = setting.partition("=")
        overrides[field_name] = float(value) if "." in value else int(value)
    algorithm: LimitAlgorithm = type(create_limit(name))(**overrides)
    return algorithm


def every_request(algorithm: LimitAlgorithm) -> Feed:
    """The adaptive pattern's way: each answered request is one sample."""

    def feed(_now: float, rtt: float, in_flight: int) -> None:
        algorithm.on_sample(rtt, in_flight, False)

    return feed


@dataclass(frozen=True)
class Outcome:
    goodput: float
    p99_ms: float
    limit_median: float
    limit_most: int


def run(
    algorithm: LimitAlgorithm, feed: Feed, clients: int, seconds: float, *, ideal: bool, seed: int
) -> Outcome:
    """Simulate `seconds` of the closed loop; statistics from 2 s on."""
    rng = random.Random(seed)
    now, in_flight, waiting = 0.0, 0, clients
    pending: list[tuple[float, float, int, bool]] = []
    latencies: list[float] = []
    limits: list[int] = []
    while True:
        while waiting and in_flight < algorithm.limit:
            waiting, in_flight = waiting - 1, in_flight + 1
            took = rng.uniform(0.05, 0.1) * usl(in_flight, ideal)
            heapq.heappush(pending, (now + took, now, in_flight, rng.random() < 0.05))
        now, started, admitted_with, failed = heapq.heappop(pending)
        if now > seconds:
            break
        in_flight, waiting = in_flight - 1, waiting + 1
        if not failed:
            feed(now, now - started, admitted_with)
            if now > 2.0:
                latencies.append(now - started)
        if now > 2.0:
            limits.append(algorithm.limit)
    latencies.sort()
    return Outcome(
        goodput=len(latencies) / (seconds - 2.0),
        p99_ms=latencies[int(len(latencies) * 0.99)] * 1000,
        limit_median=statistics.median(limits),
        limit_most=max(limits),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algorithms", nargs="+", default=["gradient2", "vegas", "aimd"])
    parser.add_argument("--seconds", nargs="+", type=float, default=[10.0])
    parser.add_argument(
        "--window",
        nargs="+",
        type=float,
        default=[0.0],
        help="0: every request (carebench); else WindowedLimit's window, s",
    )
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--ideal", action="store_true", help="the ideal database (no USL)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override one of the algorithm's settings, e.g. rtt_tolerance=1.1 (repeatable)",
    )
    args = parser.parse_args()
    database = "ideal" if args.ideal else "realistic"
    print(
        f"{database} database, {args.clients} clients re-sending at once; medians of "
        f"{args.seeds} seeds; settings {' '.join(args.set) or 'the defaults'}"
    )
    for name in args.algorithms:
        for window in args.window:
            for seconds in args.seconds:
                outcomes = []
                for seed in range(args.seeds):
                    algorithm = with_settings(name, args.set)
                    feed = Window(algorithm, window) if window else every_request(algorithm)
                    outcomes.append(
                        run(algorithm, feed, args.clients, seconds, ideal=args.ideal, seed=seed)
                    )
                fed = f"{window:g} s windows" if window else "every request"
                print(
                    f"{name:9} {fed:14} {seconds:5g} s: goodput "
                    f"{statistics.median(o.goodput for o in outcomes):6.1f}/s, p99 "
                    f"{statistics.median(o.p99_ms for o in outcomes):5.0f} ms, limit median "
                    f"{statistics.median(o.limit_median for o in outcomes):4.0f}, most "
                    f"{statistics.median(o.limit_most for o in outcomes):4.0f}"
                )


if __name__ == "__main__":
    main()
