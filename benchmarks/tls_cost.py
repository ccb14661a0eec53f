"""What HTTPS costs per request: `loadtest --target` over plain HTTP against the same over TLS.

The server (`serve --pattern workerpool`, zero database latency, so its own cost shows) is
pinned to the first CPU and the load generator to the second; plain and TLS alternate for
--rounds rounds so a drift of the machine hits both. Keep-alive connections: the handshake
is paid once per connection, and what is measured is the cost of encrypting and decrypting
every request and response. Certificates are made for the run with trustme (a dev
dependency). Prints req/s, p50 and p99 per run, and the TLS/plain ratio of each round's
pair with the median of those ratios.

    flock /tmp/carebench-bench.lock .venv/bin/python benchmarks/tls_cost.py
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import trustme

from carebench.loadgen.tls import ClientTLSConfig, client_context
from carebench.server.process import ServerProcess

SERVE = [
    "--pattern", "workerpool", "--db-profile", "ideal", "--min-latency", "0",
    "--max-latency", "0", "--error-rate", "0", "--quiet",
]  # fmt: skip


def certificates(directory: Path) -> tuple[Path, Path, Path]:
    """(CA, server certificate chain, server key) as PEM files in `directory`."""
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    (directory / "server.pem").write_bytes(b"".join(b.bytes() for b in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(directory / "server.key"))
    return directory / "ca.pem", directory / "server.pem", directory / "server.key"


def one_run(
    server_args: list[str], client_args: list[str], options: argparse.Namespace
) -> dict[str, Any]:
    cpus = sorted(os.sched_getaffinity(0))
    server_cpu, loadgen_cpu = cpus[0], cpus[1 % len(cpus)]
    tls = None
    if client_args:
        tls = client_context(ClientTLSConfig(cacert=client_args[1]))
    with ServerProcess(
        [*SERVE, "--server", options.server, *server_args], cpus={server_cpu}, tls=tls
    ) as server:
        command = [
            "taskset", "-c", str(loadgen_cpu), sys.executable, "-m", "carebench", "loadtest",
            "--target", server.url, *client_args, "--concurrency", str(options.concurrency),
            "--duration", str(options.duration), "--warmup", str(options.warmup), "--json",
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=True)
    (result,) = json.loads(done.stdout)
    loaded: dict[str, Any] = result
    return loaded


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--server", default="uvicorn")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        ca, cert, key = certificates(Path(temp))
        modes = {
            "plain": ([], []),
            "tls": (["--tls-cert", str(cert), "--tls-key", str(key)], ["--cacert", str(ca)]),
        }
        runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
        for round_number in range(1, options.rounds + 1):
            for mode, (server_args, client_args) in modes.items():
                result = one_run(server_args, client_args, options)
                runs[mode].append(result)
                latency = result["latency_ms"]
                print(
                    f"round {round_number} {mode:5} {result['requests_per_second']:9.0f} req/s"
                    f"  p50 {latency['median']:.2f} ms  p99 {latency['p99']:.2f} ms"
                    f"  ok {result['success_requests']}/{result['total_requests']}",
                    flush=True,
                )
    medians = {
        mode: {
            "rps": statistics.median(r["requests_per_second"] for r in results),
            "p50": statistics.median(r["latency_ms"]["median"] for r in results),
            "p99": statistics.median(r["latency_ms"]["p99"] for r in results),
        }
        for mode, results in runs.items()
    }
    for mode, values in medians.items():
        print(
            f"median {mode:5} {values['rps']:9.0f} req/s  p50 {values['p50']:.2f} ms"
            f"  p99 {values['p99']:.2f} ms"
        )
    # Each round's TLS run against the plain run just before it: the two share the machine's
    # state of the moment, which on a shared machine moves more than TLS costs.
    pairs = list(zip(runs["plain"], runs["tls"], strict=True))
    ratios: dict[str, list[float]] = {
        "req/s": [t["requests_per_second"] / p["requests_per_second"] for p, t in pairs],
        "p50": [t["latency_ms"]["median"] / p["latency_ms"]["median"] for p, t in pairs],
        "p99": [t["latency_ms"]["p99"] / p["latency_ms"]["p99"] for p, t in pairs],
    }
    for name, ratio in ratios.items():
        spread = ", ".join(f"{value:.2f}" for value in ratio)
        print(f"tls/plain {name:5}: median {statistics.median(ratio):.2f}x (rounds {spread})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
