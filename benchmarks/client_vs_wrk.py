"""Compare carebench's load generator with wrk against one fast target that is not the limit.

The target is nginx (C, one worker pinned to CPU 0) answering every request with a small fixed
JSON body from a config file this script writes, so it costs a few microseconds per request and
leaves headroom for both tools. wrk (`-t1 -cN`) and the real load generator (`run_plan` of
`carebench loadtest --target URL --concurrency N --duration D`, in this process) take turns on
CPU 1 in alternating rounds. Each side's CPU is measured over the measured window only (wrk: its
rusage as a reaped child; our client: this process's CPU time between the moment measuring
starts, after the warm-up, and the moment sending stops; nginx: /proc/PID/stat), so the report
gives raw req/s and req/s per core-second used for both tools, and the target's CPU. A run whose
target used >= 90 % of its core is flagged "target-bound": its raw rate measures nginx.

    .venv/bin/python benchmarks/client_vs_wrk.py --duration 10 --runs 3

Needs `wrk` and `nginx` on PATH (Debian: `apt-get install -y wrk nginx`); exits 2 naming what
is missing. Starts nginx with its own config in a temporary directory and stops it by its PID.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from carebench.loadgen import compiled
from carebench.loadgen.config import LoadConfig
from carebench.loadgen.runner import RunPlan, run_plan

TARGET_CPU = 0
CLIENT_CPU = 1
HOST = "127.0.0.1"
#: The target's CPU share from which a run counts as limited by the target, not the tool.
TARGET_BOUND = 0.90
#: A small JSON body, like a short patient record; `return` serves it with no file I/O.
BODY = '{"id":"P12345","name":"Test Patient","status":"active","version":1}'

NGINX_CONFIG = """\
daemon off;
master_process off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 600s;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    server {{
        listen {host}:{port};
        default_type application/json;
        location / {{ return 200 '{body}'; }}
    }}
}}
"""


@dataclass(frozen=True, slots=True)
class RunResult:
    """One measured run of one tool: its rate and each side's CPU (cores busy on average)."""

    tool: str
    rate: float
    errors: int
    target_cpu: float
    tool_cpu: float

    @property
    def rate_per_core(self) -> float:
        """Requests per CPU-second the tool used: its cost per request, inverted."""
        return self.rate / self.tool_cpu if self.tool_cpu else 0.0

    @property
    def target_bound(self) -> bool:
        return self.target_cpu >= TARGET_BOUND


def main(argv: Sequence[str] | None = None) -> int:
    """Run the comparison and print a report; returns the process exit code."""
    args = _parse_args(argv)
    missing = [tool for tool in ("wrk", "nginx") if _which(tool) is None]
    if missing:
        print(
            f"error: {' and '.join(missing)} not found on PATH; install with "
            f"`apt-get install -y {' '.join(missing)}` (Debian/Ubuntu) and rerun",
            file=sys.stderr,
        )
        return 2
    print(_machine_report())
    pinned = _pin_self()
    with (
        tempfile.TemporaryDirectory(prefix="carebench-nginx-") as root,
        _Nginx(Path(root), _free_port(), pinned) as target,
    ):
        results = _measure(target, args)
    _print_summary(results)
    return 0


def _which(tool: str) -> str | None:
    # Debian puts nginx in /usr/sbin, which is not on every user's PATH.
    return shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per run (default 10)")
    parser.add_argument("--connections", type=int, default=64, help="open connections (64)")
    parser.add_argument("--runs", type=int, default=3, help="measured runs per tool (3)")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds (1)")
    args = parser.parse_args(argv)
    for name in ("duration", "connections", "runs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} ({getattr(args, name)}) must be >= 1")
    if args.warmup < 0:
        parser.error(f"--warmup ({args.warmup}) must be >= 0")
    return args


def _machine_report() -> str:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    nginx = subprocess.run([str(_which("nginx")), "-v"], capture_output=True, text=True)
    return "\n".join(
        [
            f"cpu:      {model.group(1) if model else platform.processor() or 'unknown'}",
            f"cores:    {os.cpu_count()} (usable: {len(os.sched_getaffinity(0))})",
            f"python:   {platform.python_implementation()} {platform.python_version()}",
            f"kernel:   {platform.release()}",
            f"target:   {nginx.stderr.strip()}, 1 worker, fixed {len(BODY)}-byte JSON body",
            "packages: " + ", ".join(f"{p} {version(p)}" for p in ("uvloop", "httptools")),
            "client:   "
            + ", ".join(f"{module} {how}" for module, how in sorted(compiled.status().items())),
        ]
    )


def _pin_self() -> bool:
    usable = os.sched_getaffinity(0)
    if not {TARGET_CPU, CLIENT_CPU} <= usable:
        print(f"warning: CPUs {TARGET_CPU} and {CLIENT_CPU} are not both usable; running unpinned")
        return False
    # wrk is started from this process and inherits the pin, so both tools get the same core.
    os.sched_setaffinity(0, {CLIENT_CPU})
    print(f"pinning:  nginx on CPU {TARGET_CPU}, wrk and our client on CPU {CLIENT_CPU}")
    return True


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


class _Nginx:
    """nginx with this script's config as a pinned single-process child, ready inside ``with``."""

    def __init__(self, root: Path, port: int, pinned: bool) -> None:
        self.port = port
        self.url = f"http://{HOST}:{port}"
        self._root = root
        self._pinned = pinned
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> _Nginx:
        config = self._root / "nginx.conf"
        config.write_text(
            NGINX_CONFIG.format(root=self._root, host=HOST, port=self.port, body=BODY)
        )
        command = [str(_which("nginx")), "-p", str(self._root), "-e", "stderr", "-c", str(config)]
        pin = functools.partial(os.sched_setaffinity, 0, {TARGET_CPU}) if self._pinned else None
        self._process = subprocess.Popen(command, preexec_fn=pin)
        self._wait_ready(self._process)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def cpu_seconds(self) -> float:
        """User plus system CPU time nginx has used so far (one process: master_process off)."""
        assert self._process is not None
        fields = Path(f"/proc/{self._process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def _wait_ready(self, process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise SystemExit(f"error: nginx exited with code {process.returncode}")
            try:
                socket.create_connection((HOST, self.port), timeout=1).close()
            except OSError:
                time.sleep(0.05)
            else:
                return
        raise SystemExit(f"error: nginx not accepting connections on {self.url} after 15 s")


def _measure(target: _Nginx, args: argparse.Namespace) -> list[RunResult]:
    results: list[RunResult] = []
    for run in range(args.runs):
        # Alternate which tool goes first so slow drift (thermal, noisy neighbours) is shared.
        tools = ["client", "wrk"] if run % 2 else ["wrk", "client"]
        for tool in tools:
            result = _timed_run(target, tool, args)
            flag = "  TARGET-BOUND" if result.target_bound else ""
            print(
                f"run {run + 1}/{args.runs} {tool:>6}: {result.rate:10,.0f} req/s  "
                f"errors {result.errors}  CPU: {tool} {result.tool_cpu:4.0%} "
                f"({result.rate_per_core:,.0f} req/s per core), "
                f"target {result.target_cpu:4.0%}{flag}",
                flush=True,
            )
            results.append(result)
    return results


def _timed_run(target: _Nginx, tool: str, args: argparse.Namespace) -> RunResult:
    if tool == "wrk":
        before = target.cpu_seconds()
        rate, errors, cpu, wall = _run_wrk(target.url, args.connections, args.duration)
        target_cpu = (target.cpu_seconds() - before) / wall
        return RunResult(tool, rate, errors, target_cpu, cpu / wall)
    window = _Window(target)
    rate, errors = _run_client(target.url, args.connections, args.duration, args.warmup, window)
    return RunResult(tool, rate, errors, window.target_cpu, window.tool_cpu)


def _run_wrk(url: str, connections: int, duration: int) -> tuple[float, int, float, float]:
    """wrk's req/s and errors, the CPU seconds it used, and its wall time."""
    command = [str(_which("wrk")), "-t1", f"-c{connections}", f"-d{duration}s", url + "/"]
    cpu_before = _children_cpu_seconds()
    wall_before = time.perf_counter()
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    wall = time.perf_counter() - wall_before
    cpu = _children_cpu_seconds() - cpu_before
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    if rate is None:
        raise SystemExit(f"error: could not find Requests/sec in wrk output:\n{output}")
    errors = sum(
        int(n) for n in re.findall(r"(?:connect|read|write|timeout|responses:) (\d+)", output)
    )
    return float(rate.group(1)), errors, cpu, wall


def _children_cpu_seconds() -> float:
    # nginx is a child too, but it is not reaped until the end, so it is not counted here.
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class _Window:
    """A Progress that notes both sides' CPU when measuring starts (after the warm-up) and when
    sending stops, so start-up, warm-up and building the summary are left out."""

    def __init__(self, target: _Nginx) -> None:
        self._target = target
        self._start = (0.0, 0.0, 0.0)
        self.tool_cpu = self.target_cpu = 0.0

    def _now(self) -> tuple[float, float, float]:
        return time.perf_counter(), time.process_time(), self._target.cpu_seconds()

    def begin(self, label: str, total: float) -> None:
        self._start = self._now()

    def update(self, completed: float) -> None:
        return None

    def end(self) -> None:
        wall, tool, target = (b - a for a, b in zip(self._start, self._now(), strict=True))
        self.tool_cpu, self.target_cpu = tool / wall, target / wall


def _run_client(
    url: str, connections: int, duration: float, warmup: float, window: _Window | None = None
) -> tuple[float, int]:
    """The load generator's attempts per second and its failed requests, as loadtest runs it."""
    load = LoadConfig(concurrency=connections, duration=duration, warmup=warmup)
    [result] = run_plan(RunPlan(patterns=["target"], load=load, mode="target", target=url), window)
    return result["requests_per_second"], result["total_requests"] - result["success_requests"]


def _print_summary(results: list[RunResult]) -> None:
    medians: dict[str, tuple[float, float, float]] = {}
    print()
    for tool in ("wrk", "client"):
        runs = [r for r in results if r.tool == tool]
        rates = [r.rate for r in runs]
        medians[tool] = (
            statistics.median(rates),
            statistics.median(r.rate_per_core for r in runs),
            statistics.median(r.target_cpu for r in runs),
        )
        label = "wrk -t1" if tool == "wrk" else "our client"
        rate, per_core, target_cpu = medians[tool]
        print(
            f"{label:>10}: median {rate:10,.0f} req/s, {per_core:10,.0f} req/s per core "
            f"(raw min {min(rates):,.0f}, max {max(rates):,.0f}, runs {len(rates)}); "
            f"target CPU {target_cpu:.0%}"
        )
        _warn_if_unstable(label, rates)
    bound = sum(r.target_bound for r in results)
    if bound:
        print(
            f"warning: {bound} of {len(results)} runs were target-bound (nginx >= "
            f"{TARGET_BOUND:.0%} of its core): their raw rates measure the target"
        )
    (raw_client, core_client, _), (raw_wrk, core_wrk, _) = medians["client"], medians["wrk"]
    rounds = _per_round_ratios(results)
    print(
        "per round (side by side, so drift in the machine's speed cancels), client / wrk per "
        f"core: {' '.join(f'{r:.2f}' for r in rounds)}; median {statistics.median(rounds):.2f}"
    )
    print(
        f"     ratio: our client / wrk = {raw_client / raw_wrk:.2f} raw req/s, "
        f"{core_client / core_wrk:.2f} per core of CPU used"
        + (" (some runs target-bound)" if bound else "")
    )


def _per_round_ratios(results: list[RunResult]) -> list[float]:
    """Each round's client / wrk rate per core: a round runs both tools back to back."""
    ratios = []
    for first, second in zip(results[::2], results[1::2], strict=True):
        client, wrk = (first, second) if first.tool == "client" else (second, first)
        ratios.append(client.rate_per_core / wrk.rate_per_core)
    return ratios


def _warn_if_unstable(label: str, rates: list[float]) -> None:
    # Same thresholds as pyperf: a wide spread means the numbers are not worth comparing.
    mean = statistics.fmean(rates)
    stdev = statistics.stdev(rates) if len(rates) > 1 else 0.0
    if stdev >= 0.1 * mean or min(rates) < 0.5 * mean or max(rates) > 1.5 * mean:
        print(f"warning: {label} runs are unstable (stdev {stdev:,.0f} on mean {mean:,.0f})")


if __name__ == "__main__":
    sys.exit(main())
