"""What access control (and the audit trail) costs per request, in process (no HTTP).

Two tables. The first times a legacy read through the whole app (routing, the gate, the naive
pattern, a zero-latency simulator, the body) with no access control, with a bearer JWT the
gate has cached, with an API key, and with the JWT plus an audit trail writing to /dev/null
(its writer thread sharing the process, as in a server). The second times the verification
alone: a token's first sight (signature, claims: ES256 and RS256) against a cached one.
Several runs of calibrated loops; median and spread.

    flock /tmp/carebench-bench.lock .venv/bin/python benchmarks/auth_cost.py
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from carebench.audit.config import AuditConfig
from carebench.auth.apikeys import load_api_keys
from carebench.auth.bearer import JwtVerifier, load_keys
from carebench.auth.gate import AccessGate
from carebench.backends.simulator import SimulatedBackend, SimulatorConfig
from carebench.patterns.base import PatternConfig, create_pattern
from carebench.server.app import CareBenchApp

RUNS = 7
LOOPS = 20_000
API_KEY = "bench-key-0123456789abcdef0123"


class _Cycle:
    """uvicorn's request cycle as the app sees it (see benchmarks/fhir_cost.py)."""

    disconnected = False

    async def receive(self) -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}


def _key(folder: Path, kind: str) -> tuple[Any, str, JwtVerifier]:
    private: Any = (
        ec.generate_private_key(ec.SECP256R1())
        if kind == "ES256"
        else rsa.generate_private_key(65537, 2048)
    )
    pem = folder / f"{kind}.pem"
    pem.write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    now = int(time.time())
    claims = {"iss": "carebench", "aud": "carebench", "sub": "bench", "exp": now + 3600}
    token = jwt.encode({**claims, "scope": "user/Patient.read"}, private, algorithm=kind)
    return private, token, JwtVerifier(load_keys(str(pem)), "carebench", "carebench")


async def _app_run(
    gate: AccessGate | None, headers: list[tuple[bytes, bytes]], audit: str | None = None
) -> list[float]:
    """`audit`: an --audit-format, the records going to /dev/null (their writer thread runs)."""
    config = SimulatorConfig(min_latency=0, max_latency=0, error_rate=0, profile="ideal", seed=1)
    backend = SimulatedBackend(config)
    pattern = create_pattern("naive", backend, PatternConfig())
    trail = None if audit is None else AuditConfig(os.devnull, audit, 100_000).build_trail()
    app = CareBenchApp(pattern, backend, gate=gate, audit=trail)
    await app.startup()
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/api/v1/patients",
        "query_string": b"id=P00042",
        "headers": [(b"host", b"127.0.0.1:8080"), *headers],
        "scheme": "http",
        "server": ("127.0.0.1", 8080),
        "client": ("127.0.0.1", 50000),
    }
    receive = _Cycle().receive
    statuses: list[int] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    for _ in range(LOOPS // 10):
        await app(scope, receive, send)
    per_request = []
    for _ in range(RUNS):
        statuses.clear()
        started = time.perf_counter()
        for _ in range(LOOPS):
            await app(scope, receive, send)
        per_request.append((time.perf_counter() - started) / LOOPS * 1e6)
        assert set(statuses) == {200}, statuses[:3]
    await app.shutdown()
    return per_request


def _loop(call: Callable[[], object], loops: int) -> list[float]:
    call()
    samples = []
    for _ in range(RUNS):
        started = time.perf_counter()
        for _ in range(loops):
            call()
        samples.append((time.perf_counter() - started) / loops * 1e6)
    return samples


def _row(label: str, samples: list[float], base: float | None = None) -> str:
    median, spread = statistics.median(samples), statistics.stdev(samples)
    extra = f"{median - base:>+10.2f}" if base is not None else f"{'':>10}"
    warn = "  (spread >= 10%: noisy)" if spread >= 0.1 * median else ""
    return f"{label:<28}{median:>10.2f}{spread:>8.2f}{extra}{warn}"


async def main() -> None:
    folder = Path(tempfile.mkdtemp())
    _, es_token, es_verifier = _key(folder, "ES256")
    _, rs_token, rs_verifier = _key(folder, "RS256")
    (folder / "keys").write_text(f"{API_KEY} user/Patient.read\n")
    bearer = [(b"authorization", f"Bearer {es_token}".encode())]
    runs = {
        "no access control": await _app_run(None, []),
        "jwt (cached token)": await _app_run(AccessGate(es_verifier), bearer),
        "apikey": await _app_run(
            AccessGate(load_api_keys(str(folder / "keys")), api_key_header=True),
            [(b"x-api-key", API_KEY.encode())],
        ),
        "jwt + audit (json)": await _app_run(AccessGate(es_verifier), bearer, "json"),
        "jwt + audit (fhir)": await _app_run(AccessGate(es_verifier), bearer, "fhir"),
    }
    base = statistics.median(runs["no access control"])
    print(f"{'legacy read through the app':<28}{'us/req':>10}{'stdev':>8}{'+us':>10}")
    for label, samples in runs.items():
        print(_row(label, samples, None if label == "no access control" else base))
    print()
    print(f"{'verification alone':<28}{'us':>10}{'stdev':>8}")
    print(_row("ES256 first sight", _loop(lambda: es_verifier._verify(es_token), 500)))
    print(_row("RS256 first sight", _loop(lambda: rs_verifier._verify(rs_token), 500)))
    print(_row("cached token", _loop(lambda: es_verifier.verify(es_token), LOOPS)))


if __name__ == "__main__":
    asyncio.run(main())
