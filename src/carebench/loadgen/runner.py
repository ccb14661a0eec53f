"""Runs a load test per pattern: start a server (or use a target, or go in-process), drive it,
sample it, collect its /metrics, stop it, and describe the result."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from carebench.faults.timeline import FaultWindowReport, windows_in_run
from carebench.loadgen.channels import Channel, HttpChannel, InProcessChannel
from carebench.loadgen.client import parse_url
from carebench.loadgen.config import LoadConfig
from carebench.loadgen.describe import Measured, ScheduleTally, describe_run
from carebench.loadgen.engine import Engine
from carebench.loadgen.generator_process import GeneratorJob
from carebench.loadgen.generators import GeneratorPool, Placement, place_generators
from carebench.loadgen.ids import parse_ids
from carebench.loadgen.interrupts import run_async, stop_on_interrupt
from carebench.loadgen.machine import describe_machine
from carebench.loadgen.phases import mean_rate, run_measured, warm_up
from carebench.loadgen.priorities import parse_priorities
from carebench.loadgen.results import LoadTestResult, RunRecorder
from carebench.loadgen.sampler import (
    HttpMetricsProbe,
    Sampler,
    StateSample,
    in_process_probe,
    restarts_during,
)
from carebench.loadgen.shares import split_load
from carebench.loadgen.tls import ClientTLSConfig, client_context
from carebench.patterns.base import create_pattern
from carebench.server.process import ServerProcess
from carebench.server.setup import ServerSetup


class TargetUnreachable(RuntimeError):
    """The target server refused or failed the pre-flight /health check."""


class Progress(Protocol):
    """Receives progress while a run goes (a rich bar in the terminal, or nothing)."""

    def begin(self, label: str, total: float) -> None: ...

    def update(self, completed: float) -> None: ...

    def end(self) -> None: ...


class NoProgress:
    def begin(self, label: str, total: float) -> None:
        return None

    def update(self, completed: float) -> None:
        return None

    def end(self) -> None:
        return None


@dataclass(frozen=True, slots=True)
class RunPlan:
    """Everything a load test needs: what to drive, how hard, and with which server flags."""

    patterns: Sequence[str]
    load: LoadConfig
    mode: str = "http"
    target: str | None = None
    #: The settings of every server started (or, in-process, of every pattern and backend).
    setup: ServerSetup = field(default_factory=ServerSetup)
    #: How to speak TLS to an https:// target or to servers started with --tls-cert.
    tls: ClientTLSConfig = field(default_factory=ClientTLSConfig)

    @property
    def server_args(self) -> list[str]:
        """`carebench serve` arguments for each server the plan starts."""
        return self.setup.as_flags()


def split_cpus(server_processes: int = 1) -> tuple[set[int] | None, set[int] | None]:
    """(server CPUs, load generator CPUs): a core per server process, the rest for us; no
    pinning at all (everyone shares) when that would leave the load generator none."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) <= server_processes:
        return None, None
    return set(cpus[:server_processes]), set(cpus[server_processes:])


def run_plan(plan: RunPlan, progress: Progress | None = None) -> list[LoadTestResult]:
    """One result per pattern (a single result for a --target), in order.

    Stops early, keeping what it measured, when a run is interrupted.
    """
    progress = progress or NoProgress()
    machine = describe_machine()
    results: list[LoadTestResult] = []
    labels = ["target"] if plan.mode == "target" else list(plan.patterns)
    for label in labels:
        try:
            result = _run_one(label, plan, progress)
        except KeyboardInterrupt:  # between runs, or a second Ctrl-C: keep the finished runs
            if not results:
                raise
            results[-1]["interrupted"] = True
            break
        result["machine"] = machine
        results.append(result)
        if result["interrupted"]:
            break
    return results


def _run_one(label: str, plan: RunPlan, progress: Progress) -> LoadTestResult:
    if plan.mode == "inprocess":
        return run_async(_drive_in_process(label, plan, progress))
    tls = client_tls(plan)
    if plan.mode == "target":
        assert plan.target is not None
        # The token goes to /health and /metrics too: beyond loopback, a server with --auth
        # answers them only to a credential (a Kubernetes Job is never on its loopback).
        check_target(plan.target, tls, plan.load.headers)
        result = _drive(plan.target, label, plan, progress, tls, (None, os.sched_getaffinity(0)))
        result["server_metrics"] = fetch_json(plan.target + "/metrics", tls, plan.load.headers)
        result["pattern"] = (result["server_metrics"] or {}).get("pattern", "target")
        return _with_restarts(result)
    server_cpus, own_cpus = split_cpus(plan.setup.server.processes)
    args = [*plan.server_args, "--pattern", label, "--quiet"]
    with ServerProcess(args, cpus=server_cpus, tls=tls) as server, _pinned(own_cpus):
        result = _drive(server.url, label, plan, progress, tls, (server_cpus, own_cpus))
        result["server_metrics"] = fetch_json(server.url + "/metrics", tls, plan.load.headers)
    loadgen = {cpu for run in result.get("generators", []) for cpu in run["cpus"]}
    result["affinity"] = {
        "server": sorted(server_cpus or []),
        "loadgen": sorted(loadgen or own_cpus or []),
    }
    return _with_restarts(result)


def _with_restarts(result: LoadTestResult) -> LoadTestResult:
    """`result` with `server_restarts` when its server counts the processes it replaced."""
    restarts = restarts_during(result["server_samples"], result["server_metrics"])
    if restarts is not None:
        result["server_restarts"] = restarts
    return result


def _drive(
    url: str,
    label: str,
    plan: RunPlan,
    progress: Progress,
    tls: ssl.SSLContext | None,
    cpus: tuple[set[int] | None, set[int] | None],
) -> LoadTestResult:
    """Drive `url` from this process, or from --generators processes placed on `cpus`
    (the server's, when known, and those to spare)."""
    if plan.load.generators == 1:
        return run_async(_drive_http(url, label, plan, progress, tls))
    placements = place_generators(plan.load.generators, *cpus)
    return run_async(_drive_generators(url, label, plan, progress, tls, placements))


def client_tls(plan: RunPlan) -> ssl.SSLContext | None:
    """The client's TLS context for the plan's server(s), None over plain HTTP: a target is
    verified as --cacert/--insecure say; servers the plan starts are trusted by their own
    --tls-cert."""
    if plan.mode == "target":
        assert plan.target is not None
        return client_context(plan.tls) if parse_url(plan.target).tls else None
    server = plan.setup.server
    if plan.mode == "inprocess" or not server.tls:
        return None
    return client_context(plan.tls, server.tls_cert)


async def _drive_http(
    url: str, label: str, plan: RunPlan, progress: Progress, tls: ssl.SSLContext | None
) -> LoadTestResult:
    host, port, base, _ = parse_url(url)
    endpoint = plan.load.endpoint
    channels = [
        HttpChannel(host, port, base, endpoint, tls=tls, headers=plan.load.headers)
        for _ in range(plan.load.connections)
    ]
    probe = HttpMetricsProbe(host, port, base, tls, plan.load.headers)

    async def read_faults() -> Any:
        return await asyncio.to_thread(server_faults, url, tls, plan.load.headers)

    try:
        return await _measure(label, plan, channels, probe, progress, url, read_faults)
    finally:
        probe.close()
        for channel in channels:
            channel.close()


async def _drive_generators(
    url: str,
    label: str,
    plan: RunPlan,
    progress: Progress,
    tls: ssl.SSLContext | None,
    placements: Sequence[Placement],
) -> LoadTestResult:
    """The run split between generator processes (loadgen/generators.py), merged exactly;
    this process samples the server meanwhile."""
    load = plan.load
    host, port, base, _ = parse_url(url)
    probe = HttpMetricsProbe(host, port, base, tls, load.headers)
    client_settings, server_cert = _generator_tls(plan)
    jobs = [
        GeneratorJob(
            url, load, share, client_settings, server_cert, place.cpus, place.shares_server_core
        )
        for share, place in zip(split_load(load, load.generators), placements, strict=True)
    ]
    try:
        with GeneratorPool(jobs) as pool, stop_on_interrupt(pool):
            await pool.ready()
            started = pool.begin(load.warmup)
            await asyncio.sleep(max(started - time.perf_counter(), 0.0))
            sampler = Sampler(probe, started)
            sampler.start()
            ticker = _tick(progress, label, load, lambda: pool.completed, started)
            try:
                run = await pool.finish()
            finally:
                ticker.cancel()
                await sampler.stop()
                progress.end()
    finally:
        probe.close()

    async def read_faults() -> Any:
        return await asyncio.to_thread(server_faults, url, tls, load.headers)

    schedule = None
    if load.loop == "open":
        assert load.duration is not None
        end = started + load.duration
        schedule = run.schedule(
            mean_rate(load.rate, load.shape), load.arrivals == "poisson", started, end
        )
    measured = Measured(
        run.recorder,
        run.duration,
        schedule,
        sampler.samples,
        run.interrupted or pool.stopping,
        await _fault_windows(read_faults, started),
    )
    result = describe_run(label, plan.mode, load, plan.server_args, measured, url)
    result["generators"] = run.runs
    return result


def _generator_tls(plan: RunPlan) -> tuple[ClientTLSConfig | None, str | None]:
    """What a generator process needs to build `client_tls(plan)` itself (an SSLContext
    does not cross processes): the client settings, and a started server's certificate."""
    if plan.mode == "target":
        assert plan.target is not None
        return (plan.tls if parse_url(plan.target).tls else None), None
    server = plan.setup.server
    return (plan.tls, server.tls_cert) if server.tls else (None, None)


async def _drive_in_process(label: str, plan: RunPlan, progress: Progress) -> LoadTestResult:
    setup = plan.setup
    backend = setup.build_backend()
    await backend.start()
    pattern = create_pattern(label, backend, setup.patterns)
    await pattern.start()
    deadlines = setup.server.class_timeouts
    channels = [
        InProcessChannel(pattern, deadlines, plan.load.endpoint)
        for _ in range(plan.load.connections)
    ]

    async def read_faults() -> Any:
        return backend.stats().get("faults")

    try:
        probe = in_process_probe(pattern.stats)
        result = await _measure(label, plan, channels, probe, progress, None, read_faults)
        result["server_metrics"] = {"pattern_state": pattern.stats(), "backend": backend.stats()}
        return result
    finally:
        await pattern.shutdown(drain_timeout=setup.server.request_timeout)
        await backend.close()


async def _measure(
    label: str,
    plan: RunPlan,
    channels: Sequence[Channel],
    probe: Callable[[], StateSample | Awaitable[StateSample]],
    progress: Progress,
    target: str | None,
    read_faults: Callable[[], Awaitable[Any]] | None = None,
) -> LoadTestResult:
    """Drive the load, then describe the run. `read_faults` returns the server's
    `backend.faults` from /metrics (or None): its fault windows are placed on the run's clock."""
    load = plan.load
    engine = Engine(
        channels,
        parse_ids(load.ids, load.seed),
        load.timeout,
        RunRecorder(time.perf_counter()),
        choose_priority=parse_priorities(load.priorities, load.seed),
        honor_retry_after=load.honor_retry_after,
    )
    with stop_on_interrupt(engine):
        if load.warmup > 0:
            await warm_up(engine, load, time.perf_counter(), load.rate, load.shape)
        recorder = RunRecorder(time.perf_counter())
        engine.start_measuring(recorder)
        sampler = Sampler(probe, recorder.started)
        sampler.start()
        ticker = _tick(progress, label, load, lambda: recorder.total, recorder.started)
        try:
            schedule = await run_measured(
                engine, load, recorder.started, load.requests, load.rate, load.shape, load.seed
            )
        finally:
            ticker.cancel()
            await sampler.stop()
            progress.end()
    duration = time.perf_counter() - recorder.started
    faults = await _fault_windows(read_faults, recorder.started) if read_faults else None
    tally = None
    if schedule is not None:
        tally = ScheduleTally(
            schedule.rate, schedule.poisson, schedule.start, schedule.end,
            schedule.issued, engine.sent, engine.last_send,
        )  # fmt: skip
    measured = Measured(recorder, duration, tally, sampler.samples, engine.stopping, faults)
    return describe_run(label, plan.mode, load, plan.server_args, measured, target)


async def _fault_windows(
    read_faults: Callable[[], Awaitable[Any]], started: float
) -> list[FaultWindowReport] | None:
    """The server's fault windows in seconds since `started` (perf_counter): its schedule
    clock is read once and paired with ours at the midpoint of the read."""
    before = time.perf_counter()
    faults = await read_faults()
    read_at = (before + time.perf_counter()) / 2
    return windows_in_run(faults, read_at - started)


def server_faults(
    url: str, tls: ssl.SSLContext | None = None, headers: Mapping[str, str] | None = None
) -> Any:
    """The `backend.faults` of a server's /metrics (None without a --faults schedule)."""
    metrics = fetch_json(url + "/metrics", tls, headers)
    backend = metrics.get("backend") if isinstance(metrics, dict) else None
    return backend.get("faults") if isinstance(backend, dict) else None


def _tick(
    progress: Progress,
    label: str,
    load: LoadConfig,
    completed: Callable[[], int],
    started: float,
) -> asyncio.Task[None]:
    by_count = load.duration is None
    progress.begin(label, load.requests if by_count else load.duration or 0.0)

    async def tick() -> None:
        while True:
            done = completed() if by_count else time.perf_counter() - started
            progress.update(done)
            await asyncio.sleep(0.1)

    return asyncio.get_running_loop().create_task(tick())


def check_target(
    url: str, tls: ssl.SSLContext | None = None, headers: Mapping[str, str] | None = None
) -> None:
    """Fail early, with the cause, when the target does not answer /health (over TLS with
    `tls`: a certificate it does not trust, or a client certificate the server wants, say so).
    `headers` (the --token's Authorization) go with it.
    """
    request = urllib.request.Request(url + "/health", headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=5, context=tls) as response:
            response.read()
    except urllib.error.HTTPError as failure:
        raise TargetUnreachable(f"{url}/health answered {failure.code}") from None
    except (urllib.error.URLError, OSError) as failure:
        reason = getattr(failure, "reason", failure)
        raise TargetUnreachable(f"cannot reach {url}: {reason}{_tls_hint(reason)}") from None


def _tls_hint(reason: object) -> str:
    if isinstance(reason, ssl.SSLCertVerificationError):
        return " (trust the server's CA with --cacert FILE, or skip the check with --insecure)"
    if isinstance(reason, ssl.SSLError) and "CERTIFICATE_REQUIRED" in str(reason).upper():
        return " (the server wants a client certificate: --client-cert FILE --client-key FILE)"
    return ""


def fetch_json(
    url: str, tls: ssl.SSLContext | None = None, headers: Mapping[str, str] | None = None
) -> dict[str, Any] | None:
    """GET a JSON document (with `headers`), or None when the server does not serve one."""
    request = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=10, context=tls) as response:
            document: dict[str, Any] = json.loads(response.read())
            return document
    except (urllib.error.URLError, OSError, ValueError):
        return None


@contextlib.contextmanager
def _pinned(cpus: set[int] | None) -> Any:
    """Run the load generator on `cpus` (away from the server), then restore."""
    if not cpus:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)
