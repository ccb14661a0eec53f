"""The cost of the safeguards (issue 12): plain HTTP, TLS, TLS + JWT, TLS + JWT + audit log.

One run measures every combination side by side: for each database (`--db-profile ideal` at
zero latency, where the server's own cost shows; the default realistic profile at the
reference's 50-100 ms, errors off) and each mode, a `carebench serve --pattern workerpool`
pinned to the first CPU answers `carebench loadtest --target` runs pinned to the second, one
per endpoint (legacy, FHIR read, FHIR $everything). Rounds alternate the order of the modes,
and each number is compared with the plain run of the same round, database and endpoint (on a
shared machine a round's pair is closer than the medians of all runs); the table shows the
medians of the runs and of those ratios. Keep-alive connections: the TLS handshake is paid
once per connection. Certificates (trustme) and the signing key are made for the run; the
token (`user/*.read`) is cached by the server after its first check, as a real client's is;
the audit log goes to a file in a temporary directory.

    /tmp/cbtools/quiet .venv/bin/python benchmarks/safeguards_cost.py \
        --output results/benchmarks/safeguards_cost.txt --note "nothing else ran"
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trustme

from carebench.loadgen.tls import ClientTLSConfig, client_context
from carebench.server.process import ServerProcess

MODES = ("plain", "tls", "tls+jwt", "tls+jwt+audit")
ENDPOINTS = ("legacy", "fhir-read", "fhir-everything")
SERVE = ["--pattern", "workerpool", "--error-rate", "0", "--quiet"]
#: Database -> (its flags, the load's clients): enough clients to keep the server busy at zero
#: latency; fewer than the 20 workers at 50-100 ms, so latency is the database's plus the
#: server's, not a queue.
DATABASES = {
    "ideal": (["--db-profile", "ideal", "--min-latency", "0", "--max-latency", "0"], 64),
    "realistic": ([], 16),
}


@dataclass(frozen=True, slots=True)
class Run:
    """One load test's outcome."""

    database: str
    mode: str
    endpoint: str
    round: int
    rps: float
    p50: float
    p99: float
    ok: int
    total: int


class Setup:
    """Certificates, a key pair and a token for the run, and each mode's flags."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        ca = trustme.CA()
        leaf = ca.issue_cert("127.0.0.1")
        self.ca = directory / "ca.pem"
        ca.cert_pem.write_to_path(str(self.ca))
        cert, key = directory / "server.pem", directory / "server.key"
        cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        leaf.private_key_pem.write_to_path(str(key))
        self.tls = ["--tls-cert", str(cert), "--tls-key", str(key)]
        carebench("token", "--new-key", str(directory / "keys"))
        self.jwt = ["--auth", "jwt", "--jwt-key", str(directory / "keys" / "public.pem")]
        private = str(directory / "keys" / "private.pem")
        self.token = carebench("token", "--key", private, "--scope", "user/*.read")
        self.audits = 0

    def server_args(self, mode: str) -> list[str]:
        args = list(self.tls) if mode != "plain" else []
        if "jwt" in mode:
            args += self.jwt
        if "audit" in mode:
            self.audits += 1
            args += ["--audit-log", str(self.directory / f"audit-{self.audits}.jsonl")]
        return args

    def client_args(self, mode: str) -> list[str]:
        args = ["--cacert", str(self.ca)] if mode != "plain" else []
        return args + (["--token", self.token] if "jwt" in mode else [])


def carebench(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "carebench", *args], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def measure(setup: Setup, options: argparse.Namespace) -> list[Run]:
    cpus = sorted(os.sched_getaffinity(0))
    server_cpu, loadgen_cpu = cpus[0], cpus[1 % len(cpus)]
    runs: list[Run] = []
    for number in range(1, options.rounds + 1):
        order = MODES[number - 1 :] + MODES[: number - 1]  # each mode leads one round
        for database in options.databases:
            flags, clients = DATABASES[database]
            for mode in order:
                tls = (
                    client_context(ClientTLSConfig(cacert=str(setup.ca)))
                    if mode != "plain"
                    else None
                )
                server_args = [*SERVE, "--server", options.server, *flags, *setup.server_args(mode)]
                with ServerProcess(server_args, cpus={server_cpu}, tls=tls) as server:
                    for endpoint in ENDPOINTS:
                        result = load(
                            server.url,
                            endpoint,
                            clients,
                            setup.client_args(mode),
                            loadgen_cpu,
                            options,
                        )
                        runs.append(as_run(result, database, mode, endpoint, number))
                        print(run_line(runs[-1]), flush=True)
    return runs


def load(
    url: str, endpoint: str, clients: int, client_args: list[str], cpu: int, options: Any
) -> dict[str, Any]:
    command = [
        "taskset", "-c", str(cpu), sys.executable, "-m", "carebench", "loadtest",
        "--target", url, "--endpoint", endpoint, *client_args, "--concurrency", str(clients),
        "--duration", str(options.duration), "--warmup", str(options.warmup), "--json",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    (result,) = json.loads(done.stdout)
    loaded: dict[str, Any] = result
    return loaded


def as_run(result: dict[str, Any], database: str, mode: str, endpoint: str, number: int) -> Run:
    latency = result["latency_ms"]
    return Run(
        database, mode, endpoint, number, result["requests_per_second"], latency["median"],
        latency["p99"], result["success_requests"], result["total_requests"],
    )  # fmt: skip


def run_line(run: Run) -> str:
    return (
        f"round {run.round} {run.database:9} {run.mode:13} {run.endpoint:15} "
        f"{run.rps:9.0f} req/s  p50 {run.p50:7.2f} ms  p99 {run.p99:7.2f} ms  "
        f"ok {run.ok}/{run.total}"
    )


def table(runs: list[Run]) -> list[str]:
    """Medians per database, endpoint and mode, and the median of each round's ratio to the
    plain run of the same round (req/s: higher is better; p50, p99: lower is better)."""
    lines = [
        f"{'database':9} {'endpoint':15} {'mode':13} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}"
        f"   {'req/s x':>7} {'p50 x':>6} {'p99 x':>6}",
    ]
    index = {(r.database, r.mode, r.endpoint, r.round): r for r in runs}
    for database in dict.fromkeys(r.database for r in runs):
        for endpoint in ENDPOINTS:
            for mode in MODES:
                mine = [
                    r
                    for r in runs
                    if (r.database, r.mode, r.endpoint) == (database, mode, endpoint)
                ]
                pairs = [(index[database, "plain", endpoint, r.round], r) for r in mine]
                ratio = {field: median_ratio(pairs, field) for field in ("rps", "p50", "p99")}
                lines.append(
                    f"{database:9} {endpoint:15} {mode:13} "
                    f"{statistics.median(r.rps for r in mine):9.0f} "
                    f"{statistics.median(r.p50 for r in mine):8.2f} "
                    f"{statistics.median(r.p99 for r in mine):8.2f}   "
                    f"{ratio['rps']:6.2f}x {ratio['p50']:5.2f}x {ratio['p99']:5.2f}x"
                )
        lines.append("")
    return lines


def median_ratio(pairs: list[tuple[Run, Run]], field: str) -> float:
    """The median over rounds of (run / plain run of its round) for one field."""
    ratios: list[float] = [getattr(run, field) / getattr(plain, field) for plain, run in pairs]
    return statistics.median(ratios)


def summary(runs: list[Run]) -> str:
    """The line the BENCHMARKS.md analysis quotes: all safeguards against plain, ideal database."""
    parts = []
    for endpoint in ENDPOINTS:
        pairs = [
            (p, r)
            for p in runs
            for r in runs
            if p.mode == "plain"
            and r.mode == MODES[-1]
            and p.database == r.database == "ideal"
            and p.endpoint == r.endpoint == endpoint
            and p.round == r.round
        ]
        rps, p50 = median_ratio(pairs, "rps"), median_ratio(pairs, "p50")
        parts.append(f"{endpoint} {rps:.2f}x req/s, {p50:.2f}x p50")
    return "all safeguards / plain at zero database latency: " + "; ".join(parts)


def git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True).stdout.strip()


def header(options: argparse.Namespace) -> list[str]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    commit = git("rev-parse", "--short", "HEAD")
    if git("status", "--porcelain", "--untracked-files=no"):
        commit += " (plus uncommitted changes in the working tree)"
    return [
        f"cpu:      {model.group(1) if model else platform.processor()}",
        f"cores:    {os.cpu_count()} (usable: {len(os.sched_getaffinity(0))})",
        f"python:   {platform.python_implementation()} {platform.python_version()}",
        f"kernel:   {platform.release()}",
        f"commit:   {commit}",
        f"date:     {options.started} to {time.strftime('%H:%M UTC', time.gmtime())}",
        "pinning:  server on CPU 0 (taskset), loadtest on CPU 1",
        f"server:   {options.server}",
        f"load:     workerpool (20 workers, queue 100), keep-alive, {options.rounds} rounds x "
        f"{options.duration:g} s (+{options.warmup:g} s warm-up) per endpoint; ideal: 64 clients, "
        "0 ms; realistic: 16 clients, 50-100 ms, errors off",
        f"else:     {options.note}",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--server", default="uvicorn", help="serve --server")
    parser.add_argument(
        "--databases", nargs="+", choices=tuple(DATABASES), default=tuple(DATABASES)
    )
    parser.add_argument("--output", type=Path, help="also write the report to this file")
    parser.add_argument("--note", default="not recorded", help="what else ran meanwhile")
    options = parser.parse_args()
    options.started = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    with tempfile.TemporaryDirectory() as temp:
        runs = measure(Setup(Path(temp)), options)
    report = [*header(options), "", *map(run_line, runs), "", *table(runs), summary(runs)]
    text = "\n".join(report) + "\n"
    print("\n".join(table(runs)) + summary(runs))
    if options.output:
        options.output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
