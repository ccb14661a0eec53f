"""Compare the load generator's HTTP client with wrk against one hello-world server.

The server (raw ASGI on uvicorn + uvloop + httptools) runs in a subprocess pinned to CPU 0;
wrk and our client take turns on CPU 1 with the same connection count and duration, so the
ratio says how close our client gets to a C load generator on one core. CPU use of both sides
is reported per run: if the server is saturated for both tools, the ratio measures the server,
not the clients, and "req/s per core" (rate / tool CPU, an extrapolation) shows each tool's
headroom instead.

    .venv/bin/python benchmarks/client_vs_wrk.py --duration 10 --connections 64

This file is also the server's app module (``client_vs_wrk:hello_app``), so it imports nothing
heavy at module level beyond the client.
"""

from __future__ import annotations

import argparse
import asyncio
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
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

from carebench.loadgen.client import HttpConnection

SERVER_CPU = 0
CLIENT_CPU = 1
HOST = "127.0.0.1"

_HELLO_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"13")],
}
_HELLO_BODY = {"type": "http.response.body", "body": b"Hello, world!"}


async def hello_app(
    scope: dict[str, Any],
    receive: Callable[[], Awaitable[dict[str, Any]]],
    send: Callable[[dict[str, Any]], Awaitable[None]],
) -> None:
    """Answer every HTTP request with a fixed 13-byte body; the cheapest app uvicorn can run."""
    await send(_HELLO_START)
    await send(_HELLO_BODY)


@dataclass(frozen=True, slots=True)
class RunResult:
    """One measured run of one tool."""

    tool: str
    rate: float
    errors: int
    server_cpu: float
    tool_cpu: float

    @property
    def rate_per_core(self) -> float:
        """What the tool could drive with one full core, if the server were not the limit."""
        return self.rate / self.tool_cpu if self.tool_cpu else 0.0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the comparison and print a report; returns the process exit code."""
    args = _parse_args(argv)
    print(_machine_report())
    pinned = _pin_self()
    wrk = shutil.which("wrk")
    if wrk is None:
        print("wrk not found on PATH (apt-get install wrk); reporting our client only")
    with _Server(_free_port(), pinned) as server:
        _run_client(server, args.connections, args.warmup)
        results = _measure(server, wrk, args)
    _print_summary(results)
    return 0


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per run (default 10)")
    parser.add_argument("--connections", type=int, default=64, help="open connections (64)")
    parser.add_argument("--runs", type=int, default=3, help="measured runs per tool (3)")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds (2)")
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
    return "\n".join(
        [
            f"cpu:      {model.group(1) if model else platform.processor() or 'unknown'}",
            f"cores:    {os.cpu_count()} (usable: {len(os.sched_getaffinity(0))})",
            f"python:   {platform.python_implementation()} {platform.python_version()}",
            f"kernel:   {platform.release()}",
            "packages: "
            + ", ".join(f"{p} {version(p)}" for p in ("uvicorn", "uvloop", "httptools")),
        ]
    )


def _pin_self() -> bool:
    usable = os.sched_getaffinity(0)
    if not {SERVER_CPU, CLIENT_CPU} <= usable:
        print(f"warning: CPUs {SERVER_CPU} and {CLIENT_CPU} are not both usable; running unpinned")
        return False
    # wrk is started from this process and inherits the pin, so both tools get the same core.
    os.sched_setaffinity(0, {CLIENT_CPU})
    print(f"pinning:  server on CPU {SERVER_CPU}, wrk and our client on CPU {CLIENT_CPU}")
    return True


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


class _Server:
    """The hello-world uvicorn server as a pinned subprocess, ready on exit from ``with``."""

    def __init__(self, port: int, pinned: bool) -> None:
        self.port = port
        self.url = f"http://{HOST}:{port}/"
        self._pinned = pinned
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> _Server:
        command = [sys.executable, "-m", "uvicorn", "--app-dir", str(Path(__file__).parent)]
        command += ["client_vs_wrk:hello_app", "--host", HOST, "--port", str(self.port)]
        command += ["--loop", "uvloop", "--http", "httptools", "--lifespan", "off"]
        command += ["--log-level", "warning", "--no-access-log"]
        pin = functools.partial(os.sched_setaffinity, 0, {SERVER_CPU}) if self._pinned else None
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
        """User plus system CPU time the server has used so far."""
        assert self._process is not None
        fields = Path(f"/proc/{self._process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def _wait_ready(self, process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise SystemExit(f"error: server exited with code {process.returncode}")
            try:
                socket.create_connection((HOST, self.port), timeout=1).close()
            except OSError:
                time.sleep(0.05)
            else:
                return
        raise SystemExit(f"error: server not accepting connections on {self.url} after 15 s")


def _measure(server: _Server, wrk: str | None, args: argparse.Namespace) -> list[RunResult]:
    results: list[RunResult] = []
    for run in range(args.runs):
        # Alternate which tool goes first so slow drift (thermal, noisy neighbours) is shared.
        tools = ["client", "wrk"] if run % 2 else ["wrk", "client"]
        for tool in tools:
            if tool == "wrk" and wrk is None:
                continue
            result = _timed_run(server, tool, wrk, args)
            print(
                f"run {run + 1}/{args.runs} {tool:>6}: {result.rate:10,.0f} req/s  "
                f"errors {result.errors}  CPU: server {result.server_cpu:4.0%}, "
                f"{tool} {result.tool_cpu:4.0%} (~{result.rate_per_core:,.0f} req/s per core)"
            )
            results.append(result)
    return results


def _timed_run(server: _Server, tool: str, wrk: str | None, args: argparse.Namespace) -> RunResult:
    server_before, tool_before = server.cpu_seconds(), _tool_cpu_seconds()
    wall_before = time.monotonic()
    if tool == "wrk":
        assert wrk is not None
        rate, errors = _run_wrk(wrk, server.url, args.connections, args.duration)
    else:
        rate, errors = _run_client(server, args.connections, args.duration)
    wall = time.monotonic() - wall_before
    server_cpu = (server.cpu_seconds() - server_before) / wall
    tool_cpu = (_tool_cpu_seconds() - tool_before) / wall
    return RunResult(tool, rate, errors, server_cpu, tool_cpu)


def _tool_cpu_seconds() -> float:
    # Our client runs in this process and wrk is a reaped child; the server is never reaped
    # during a run, so it does not leak into RUSAGE_CHILDREN.
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _run_wrk(wrk: str, url: str, connections: int, duration: int) -> tuple[float, int]:
    command = [wrk, "-t1", f"-c{connections}", f"-d{duration}s", url]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    if rate is None:
        raise SystemExit(f"error: could not find Requests/sec in wrk output:\n{output}")
    errors = sum(
        int(n) for n in re.findall(r"(?:connect|read|write|timeout|responses:) (\d+)", output)
    )
    return float(rate.group(1)), errors


def _run_client(server: _Server, connections: int, duration: float) -> tuple[float, int]:
    import uvloop  # the loop a real load-generator run uses

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(_closed_loop(server.port, connections, duration))


async def _closed_loop(port: int, connections: int, duration: float) -> tuple[float, int]:
    conns = [await HttpConnection.open(HOST, port) for _ in range(connections)]
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(duration, stop.set)
    started = time.perf_counter()
    counts = await asyncio.gather(*(_drive(conn, stop) for conn in conns))
    elapsed = time.perf_counter() - started
    for conn in conns:
        conn.close()
    ok = sum(c[0] for c in counts)
    errors = sum(c[1] for c in counts)
    return (ok + errors) / elapsed, errors


async def _drive(conn: HttpConnection, stop: asyncio.Event) -> tuple[int, int]:
    ok = errors = 0
    while not stop.is_set():
        response = await conn.get("/")
        if response.status == 200:
            ok += 1
        else:
            errors += 1
    return ok, errors


def _print_summary(results: list[RunResult]) -> None:
    medians: dict[str, float] = {}
    print()
    for tool in ("wrk", "client"):
        rates = [r.rate for r in results if r.tool == tool]
        if not rates:
            continue
        medians[tool] = statistics.median(rates)
        label = "wrk -t1" if tool == "wrk" else "our client"
        print(
            f"{label:>10}: median {medians[tool]:10,.0f} req/s  "
            f"(min {min(rates):,.0f}, max {max(rates):,.0f}, runs {len(rates)})"
        )
        _warn_if_unstable(label, rates)
    if len(medians) == 2:
        print(f"     ratio: our client / wrk = {medians['client'] / medians['wrk']:.2f}")


def _warn_if_unstable(label: str, rates: list[float]) -> None:
    # Same thresholds as pyperf: a wide spread means the numbers are not worth comparing.
    mean = statistics.fmean(rates)
    stdev = statistics.stdev(rates) if len(rates) > 1 else 0.0
    if stdev >= 0.1 * mean or min(rates) < 0.5 * mean or max(rates) > 1.5 * mean:
        print(f"warning: {label} runs are unstable (stdev {stdev:,.0f} on mean {mean:,.0f})")


if __name__ == "__main__":
    sys.exit(main())
