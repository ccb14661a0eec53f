"""`serve --processes 1` against `--processes 2`: how the server's own cost scales with processes.

The server is `carebench serve --pattern workerpool --workers 64 --queue-size 1000` at zero
database latency (so the server's own cost is what is measured), driven by `wrk -t1 -c64` on
`GET /api/v1/patients?id=P12345` after a 1 s warm-up. Nothing is pinned: on a two-core machine
wrk and the server processes share both cores, so this shows how the server scales under a
fixed load generator, not what two cores could serve (wrk's own core is half the machine).
1 and 2 processes alternate for --rounds rounds (which goes first alternates too) so a drift of
the shared machine hits both. Per run: req/s, wrk's latency p50/p99, the CPU the server's
processes used (utime + stime from /proc, in cores), req/s per server core, wrk's CPU, and
each process's share of the requests (from the JSON /metrics). Then the medians, and the
2/1 ratio of each round's pair with the median of those ratios.

    /tmp/cbtools/quiet .venv/bin/python benchmarks/processes.py --rounds 5 --duration 10 \
        | tee results/benchmarks/processes.txt
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import urllib.request
from typing import Any

from carebench.server.process import ServerProcess

SERVE = [
    "--pattern", "workerpool", "--workers", "64", "--queue-size", "1000", "--db-profile",
    "ideal", "--min-latency", "0", "--max-latency", "0", "--error-rate", "0", "--quiet",
]  # fmt: skip
PATH = "/api/v1/patients?id=P12345"
TICKS = os.sysconf("SC_CLK_TCK")
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of `pids` so far, from /proc/PID/stat."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / TICKS


def server_pids(url: str, parent: int) -> tuple[list[int], dict[int, int]]:
    """Every process of the server (the parent of a group too) and requests per serving pid."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        document: dict[str, Any] = json.load(response)
    entries = document.get("processes")
    if entries is None:
        return [parent], {parent: document["total_requests"]}
    served = {entry["pid"]: entry["total_requests"] for entry in entries}
    return [parent, *served], served


def wrk(url: str, duration: float) -> tuple[str, float]:
    """wrk's output and the CPU seconds it used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    command = ["wrk", "-t1", "-c64", f"-d{duration:g}s", "--latency", url + PATH]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return done.stdout, used


def wrk_numbers(output: str) -> dict[str, float]:
    """req/s, p50 and p99 (ms) and the non-2xx and socket errors of a wrk --latency run."""
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    numbers = {"rps": rate}
    for name, percent in (("p50", "50"), ("p99", "99")):
        value, unit = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s)", output, re.M).groups()  # type: ignore[union-attr]
        numbers[name] = float(value) * _UNITS[unit]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    numbers["errors"] = float(non2xx.group(1)) if non2xx else 0.0
    socket_errors = re.search(r"Socket errors: (.*)", output)
    numbers["errors"] += (
        sum(map(float, re.findall(r"\d+", socket_errors.group(1)))) if socket_errors else 0
    )
    return numbers


def one_run(processes: int, duration: float) -> dict[str, Any]:
    with ServerProcess([*SERVE, "--processes", str(processes)]) as server:
        wait_for_processes(server.url, processes)
        wrk(server.url, 1.0)  # warm-up
        pids, served_before = server_pids(server.url, server.pid)
        cpu_before = cpu_seconds(pids)
        output, wrk_cpu = wrk(server.url, duration)
        cpu = cpu_seconds(pids) - cpu_before
        _, served_after = server_pids(server.url, server.pid)
    numbers = wrk_numbers(output)
    served = [served_after[pid] - served_before.get(pid, 0) for pid in served_after]
    return {
        **numbers,
        "server_cores": cpu / duration,
        "per_core": numbers["rps"] * duration / cpu if cpu else 0.0,
        "wrk_cores": wrk_cpu / duration,
        "shares": [count / max(1, sum(served)) for count in served],
    }


def wait_for_processes(url: str, processes: int) -> None:
    """Until /metrics holds every process (each has started): readiness, not a fixed sleep."""
    for _ in range(1000):
        with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
            document = json.load(response)
        if document.get("process_count", 1) == processes:
            return
    raise RuntimeError(f"{processes} processes never all answered /metrics")


def describe(run: dict[str, Any]) -> str:
    shares = "/".join(f"{share * 100:.0f}" for share in run["shares"])
    return (
        f"{run['rps']:9,.0f} req/s  p50 {run['p50']:6.2f} ms  p99 {run['p99']:6.2f} ms  "
        f"server CPU {run['server_cores']:.2f} cores ({run['per_core']:7,.0f} req/s per core)  "
        f"wrk CPU {run['wrk_cores']:.2f}  requests per process {shares} %  "
        f"errors {run['errors']:.0f}"
    )


def header() -> list[str]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return [
        f"cpu:      {cpu}",
        f"cores:    {os.cpu_count()} (usable: {len(os.sched_getaffinity(0))})",
        f"python:   {platform.python_implementation()} {platform.python_version()}",
        f"kernel:   {platform.release()}",
        f"server:   carebench serve {' '.join(SERVE)} --processes N (uvicorn)",
        f"load:     wrk -t1 -c64 --latency {PATH}, 1 s warm-up",
        "pinning:  none: wrk and the server's processes share every core",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=10.0)
    options = parser.parse_args()
    print("\n".join(header()), flush=True)
    runs: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
    for number in range(1, options.rounds + 1):
        order = (1, 2) if number % 2 else (2, 1)
        for processes in order:
            run = one_run(processes, options.duration)
            runs[processes].append(run)
            print(
                f"round {number}/{options.rounds} processes {processes}: {describe(run)}",
                flush=True,
            )
    print()
    for processes, results in runs.items():
        median = {
            key: statistics.median(r[key] for r in results) for key in results[0] if key != "shares"
        }
        print(
            f"median processes {processes}: {median['rps']:9,.0f} req/s  p50 {median['p50']:.2f} ms"
            f"  p99 {median['p99']:.2f} ms  server CPU {median['server_cores']:.2f} cores"
            f" ({median['per_core']:,.0f} req/s per core)  wrk CPU {median['wrk_cores']:.2f}"
        )
    pairs = list(zip(runs[1], runs[2], strict=True))
    for key, name in (
        ("rps", "req/s"),
        ("p99", "p99"),
        ("server_cores", "server CPU"),
        ("per_core", "req/s per server core"),
    ):
        ratios = [two[key] / one[key] for one, two in pairs if one[key]]
        spread = ", ".join(f"{ratio:.2f}" for ratio in ratios)
        print(f"ratio 2/1 processes, {name}: {statistics.median(ratios):.2f}x (rounds {spread})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
