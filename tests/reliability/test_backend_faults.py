"""Backend faults from the --faults schedule against a real `carebench serve`, with the
resilience options on: an outage through the circuit breaker, error bursts and slowdowns
through retries and the request deadline, and both without resilience.

Every test syncs to the server's fault clock (its /metrics says how far into the schedule it
is), drives a few closed-loop clients over HTTP and sorts each request by when it was sent
on that clock. Nothing may hang: every request gets an answer within its client timeout and
the server exits 0. Windows are short (1-1.5 s) so the module stays under ~25 s.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from carebench.server.process import ServerProcess
from tests.reliability.conftest import Figures

PART = "backend-faults"
pytestmark = pytest.mark.slow

PATH = "/api/v1/patients?id=P12345"
CLIENTS = 4
#: No request may take this long: the server's deadlines are 1 s at most here.
CLIENT_TIMEOUT = 5.0
#: What a response may take beyond its deadline: the HTTP round trip and scheduling (measured
#: worst: 8-12 ms on an idle 2-core machine, 42 ms with other test suites running on it).
DEADLINE_MARGIN = 0.15
#: A database that answers in exactly `ms` and never fails by itself.
COMMON = ["--pattern", "workerpool", "--db-profile", "ideal", "--error-rate", "0", "--quiet"]


def database(ms: int) -> list[str]:
    return ["--min-latency", f"{ms}ms", "--max-latency", f"{ms}ms"]


@dataclass(frozen=True, slots=True)
class Sent:
    """One request, times in seconds on the server's fault clock."""

    sent: float
    done: float
    #: None: no answer within CLIENT_TIMEOUT (hung); 0: a connection error.
    status: int | None
    retry_after: str | None = None
    body: str = ""

    @property
    def latency(self) -> float:
        return self.done - self.sent


@dataclass(slots=True)
class Run:
    """A server with a fault schedule, and the client's view of its fault clock."""

    server: ServerProcess
    client: httpx.AsyncClient
    #: perf_counter() at the server's fault-clock zero.
    origin: float = 0.0

    def now(self) -> float:
        return time.perf_counter() - self.origin

    async def sync(self, reads: int = 5) -> float:
        """Place the server's fault clock on ours (from the quickest of a few /metrics
        reads, within half its round trip); how far into the schedule the server is."""
        best = (float("inf"), 0.0, 0.0)
        for _ in range(reads):
            before = time.perf_counter()
            metrics = await self.metrics()
            after = time.perf_counter()
            elapsed: float = metrics["backend"]["faults"]["elapsed_seconds"]
            best = min(best, (after - before, (before + after) / 2 - elapsed, elapsed))
        _, self.origin, elapsed = best
        return self.now()

    async def metrics(self) -> dict[str, Any]:
        document: dict[str, Any] = (await self.client.get("/metrics")).json()
        return document

    async def drive(self, until: float, pause_after_refusal: float = 0.02) -> list[Sent]:
        """CLIENTS closed-loop clients until `until` on the fault clock. A refused client
        waits `pause_after_refusal`, not its Retry-After, so the test sees the moment the
        server serves again."""
        sent: list[Sent] = []

        async def client() -> None:
            while self.now() < until:
                began = self.now()
                try:
                    response = await self.client.get(PATH, timeout=CLIENT_TIMEOUT)
                except httpx.TimeoutException:
                    sent.append(Sent(began, self.now(), None))
                    continue
                except httpx.TransportError:
                    sent.append(Sent(began, self.now(), 0))
                    await asyncio.sleep(pause_after_refusal)
                    continue
                status = response.status_code
                retry = response.headers.get("retry-after")
                sent.append(Sent(began, self.now(), status, retry, response.text))
                if status == 503:
                    await asyncio.sleep(pause_after_refusal)

        # Each client stops sending at `until`, and each request ends within its timeout.
        async with asyncio.timeout(until - self.now() + CLIENT_TIMEOUT + 1.0):
            await asyncio.gather(*(client() for _ in range(CLIENTS)))
        return sent


@pytest.fixture
def serve() -> Iterator[list[ServerProcess]]:
    """Servers a test starts; each must exit 0 when stopped (checked after the test)."""
    started: list[ServerProcess] = []
    yield started
    for server in started:
        assert server.stop() == 0, "\n".join(server.output[-20:])


async def start(serve: list[ServerProcess], *args: str) -> Run:
    server = ServerProcess(list(args))
    await asyncio.to_thread(server.start)
    serve.append(server)
    run = Run(server, httpx.AsyncClient(base_url=server.url))
    elapsed = await run.sync()
    assert elapsed < 1.0, f"the server was {elapsed:.2f} s into its schedule before the test"
    return run


def between(requests: list[Sent], start: float, end: float) -> list[Sent]:
    """Requests sent in [start, end) on the fault clock."""
    return [r for r in requests if start <= r.sent < end]


def statuses(requests: list[Sent]) -> set[int | None]:
    return {r.status for r in requests}


def hung(requests: list[Sent]) -> int:
    return sum(r.status is None for r in requests)


OUTAGE_AT, OUTAGE_FOR = 2.0, 1.5
OUTAGE_END = OUTAGE_AT + OUTAGE_FOR
THRESHOLD, RESET = 5, 0.25
#: The issue's bound on closing after the backend recovers.
CLOSE_BOUND = 2.0


async def watch_breaker(run: Run, until: float) -> list[tuple[float, str]]:
    """(fault-clock time, breaker state) from /metrics every 25 ms until `until`."""
    seen: list[tuple[float, str]] = []
    while run.now() < until:
        backend = (await run.metrics())["backend"]
        seen.append((backend["faults"]["elapsed_seconds"], backend["circuit_breaker"]["state"]))
        await asyncio.sleep(0.025)
    return seen


async def during_outage(run: Run) -> tuple[str, dict[str, Any]]:
    """The Prometheus text and /health in the middle of the outage."""
    await asyncio.sleep(max(0.0, OUTAGE_AT + OUTAGE_FOR / 2 - run.now()))
    prometheus = (await run.client.get("/metrics?format=prometheus")).text
    health: dict[str, Any] = (await run.client.get("/health")).json()
    return prometheus, health


async def test_the_circuit_breaker_opens_fails_fast_probes_and_closes_after_an_outage(
    serve: list[ServerProcess], figures: Figures
) -> None:
    """Outage 2.0-3.5 s: at most `threshold` database errors (plus requests already in
    flight) before the circuit opens; then 503s with Retry-After in milliseconds; probes
    every --breaker-reset that fail while the database is down; closed again, and every
    request served, within 2 s of the end of the outage."""
    run = await start(
        serve, *COMMON, *database(2), "--circuit-breaker",
        "--breaker-threshold", str(THRESHOLD), "--breaker-reset", f"{RESET * 1000:g}ms",
        "--request-timeout", "1s", "--faults", f"at {OUTAGE_AT:g}s outage for {OUTAGE_FOR:g}s",
    )  # fmt: skip
    until = OUTAGE_END + 2.0
    requests, states, (prometheus, health) = await asyncio.gather(
        run.drive(until), watch_breaker(run, until), during_outage(run)
    )
    backend = (await run.metrics())["backend"]
    await run.client.aclose()

    assert hung(requests) == 0
    assert statuses(between(requests, 0.0, OUTAGE_AT - 0.05)) == {200}
    fast = [r for r in requests if r.status == 503]
    failed = [r for r in requests if r.status == 500]
    assert fast and failed
    opened = min(r.done for r in fast)
    assert OUTAGE_AT <= opened < OUTAGE_AT + 0.5
    # Fails fast, with Retry-After, only while the circuit is open.
    assert all("circuit breaker open" in r.body for r in fast)
    assert all(r.retry_after is not None and int(r.retry_after) >= 1 for r in fast)
    # The breaker answers without the database (every 500 above was a query that reached
    # it); what a refusal takes is the HTTP round trip, well under the 1 s deadline.
    fast_latency = sorted(r.latency for r in fast)
    assert statistics.median(fast_latency) < 0.1
    assert fast_latency[-1] < 0.5
    # Probes: half-open after each cool-down; those during the outage fail and reopen.
    transitions = backend["circuit_breaker"]["transitions"]
    assert transitions["closed->open"] == 1
    assert transitions["half_open->open"] >= 1
    assert transitions["open->half_open"] == transitions["half_open->open"] + 1
    assert transitions["half_open->closed"] == 1
    # Opens within its threshold: every database error is one of the run that opened the
    # circuit or a failed probe. The run is `threshold` long, or up to CLIENTS - 1 longer
    # when queries started before the outage succeed in its first milliseconds and reset
    # the count of consecutive failures.
    before_open = len(failed) - transitions["half_open->open"]
    assert THRESHOLD <= before_open <= THRESHOLD + CLIENTS - 1, transitions
    assert backend["faults"]["injected"]["outage"] == len(failed)
    # Closes within 2 s of the backend's recovery, and serves everything after that.
    first_ok = min(r.done for r in requests if r.status == 200 and r.sent >= OUTAGE_END)
    closed_at = min(t for t, state in states if t >= OUTAGE_END and state == "closed")
    assert first_ok - OUTAGE_END <= CLOSE_BOUND
    assert closed_at - OUTAGE_END <= CLOSE_BOUND
    assert statuses(between(requests, first_ok + 0.01, until)) == {200}
    # The fault is visible while it lasts.
    assert 'carebench_fault_active{backend="simulator",kind="outage"} 1.0' in prometheus
    assert (health["backend"]["status"], health["backend"]["fault"]) == ("down", "outage")

    figures.add(
        requests=len(requests),
        faults_injected=backend["faults"]["injected"]["outage"],
        breaker_threshold=THRESHOLD,
        errors_before_open=before_open,
        time_to_open_ms=round((opened - OUTAGE_AT) * 1000, 1),
        fast_failures=len(fast),
        fast_failure_p50_ms=round(statistics.median(fast_latency) * 1000, 2),
        fast_failure_max_ms=round(fast_latency[-1] * 1000, 2),
        failed_probes=transitions["half_open->open"],
        time_to_close_ms=round((first_ok - OUTAGE_END) * 1000, 1),
        hung=hung(requests),
    )


DEADLINE = 0.3
ERRORS_AT, ERRORS_FOR = 1.5, 1.5
SLOW_AT, SLOW_FOR = 3.5, 1.5


async def test_retries_never_push_a_request_past_its_deadline(
    serve: list[ServerProcess], figures: Figures
) -> None:
    """--retries 3 with a 300 ms deadline and 40-60 ms queries. Errors 100% (1.5-3.0 s):
    every attempt fails and retries back off until the deadline is near. Slow x10 (3.5-5.0
    s): each query would take 400-600 ms and is cut at the deadline. No response comes later
    than the deadline plus a round trip; the windows show up as 500/504, the rest as 200."""
    run = await start(
        serve, *COMMON, "--min-latency", "40ms", "--max-latency", "60ms", "--retries", "3",
        "--request-timeout", f"{DEADLINE * 1000:g}ms", "--faults",
        f"at {ERRORS_AT:g}s errors 100% for {ERRORS_FOR:g}s; at {SLOW_AT:g}s slow x10 for "
        f"{SLOW_FOR:g}s",
    )  # fmt: skip
    until = SLOW_AT + SLOW_FOR + 0.8
    requests = await run.drive(until)
    backend = (await run.metrics())["backend"]
    await run.client.aclose()

    assert hung(requests) == 0
    overshoot = max(r.latency for r in requests) - DEADLINE
    past_deadline = sum(r.latency > DEADLINE + DEADLINE_MARGIN for r in requests)
    assert past_deadline == 0, f"worst: {overshoot * 1000:.0f} ms past the deadline"
    # Requests whose every attempt falls inside a window fail; the others succeed.
    in_errors = between(requests, ERRORS_AT, ERRORS_AT + ERRORS_FOR - DEADLINE)
    in_slow = between(requests, SLOW_AT, SLOW_AT + SLOW_FOR - DEADLINE)
    assert statuses(in_errors) <= {500, 504} and in_errors
    assert statuses(in_slow) == {504}
    clean = [
        *between(requests, 0.0, ERRORS_AT - DEADLINE),
        *between(requests, ERRORS_AT + ERRORS_FOR, SLOW_AT - DEADLINE),
        *between(requests, SLOW_AT + SLOW_FOR, until),
    ]
    assert statuses(clean) == {200}
    retries = backend["retries"]
    assert retries["retried"] > 0 and retries["gave_up"] > 0

    figures.add(
        requests=len(requests),
        deadline_ms=DEADLINE * 1000,
        faults_injected=sum(backend["faults"]["injected"].values()),
        retried=retries["retried"],
        gave_up=retries["gave_up"],
        cut_at_deadline=sum(r.status == 504 for r in requests),
        past_deadline=past_deadline,
        worst_over_deadline_ms=round(max(overshoot, 0.0) * 1000, 1),
        hung=hung(requests),
    )


SLOWED_AT, SLOWED_FOR, FACTOR = 1.5, 1.0, 5
QUERY_MS = 20
BURST_AT, BURST_FOR, SHARE = 3.0, 1.5, 0.5


async def test_slowdowns_and_error_bursts_show_in_latency_and_outcomes(
    serve: list[ServerProcess], figures: Figures
) -> None:
    """No resilience, 20 ms queries. Slow x5 (1.5-2.5 s): those requests take about five
    times as long and all succeed. Errors 50% (3.0-4.5 s): about half of those requests are
    500s, exactly as many as the server says it injected; outside the windows every request
    succeeds at the usual latency."""
    run = await start(
        serve, *COMMON, *database(QUERY_MS), "--faults",
        f"at {SLOWED_AT:g}s slow x{FACTOR} for {SLOWED_FOR:g}s; "
        f"at {BURST_AT:g}s errors {SHARE:.0%} for {BURST_FOR:g}s",
    )  # fmt: skip
    until = BURST_AT + BURST_FOR + 0.5
    requests = await run.drive(until)
    injected = (await run.metrics())["backend"]["faults"]["injected"]
    await run.client.aclose()

    assert hung(requests) == 0
    clean = [
        *between(requests, 0.0, SLOWED_AT - 0.03),
        *between(requests, SLOWED_AT + SLOWED_FOR + 0.1, BURST_AT - 0.03),
        *between(requests, BURST_AT + BURST_FOR + 0.03, until),
    ]
    slowed = between(requests, SLOWED_AT, SLOWED_AT + SLOWED_FOR - 0.12)
    burst = between(requests, BURST_AT, BURST_AT + BURST_FOR - 0.03)
    assert statuses(clean) == {200} and statuses(slowed) == {200}
    usual = statistics.median(r.latency for r in clean)
    slow = statistics.median(r.latency for r in slowed)
    least = FACTOR * QUERY_MS / 1000 * 0.95
    quick = [(round(r.sent, 3), round(r.latency, 4)) for r in slowed if r.latency < least]
    assert not quick, f"sent in the slow window, not slowed: {quick}"
    assert slow >= 3.5 * usual
    assert statuses(burst) == {200, 500}
    share = sum(r.status == 500 for r in burst) / len(burst)
    assert 0.3 <= share <= 0.7
    errors = sum(r.status == 500 for r in requests)
    assert injected["errors"] == errors
    assert injected["slow"] >= len(slowed)

    figures.add(
        requests=len(requests),
        faults_injected=injected["slow"] + injected["errors"],
        slowed_requests=len(slowed),
        slowdown_factor=FACTOR,
        latency_ratio=round(slow / usual, 2),
        burst_requests=len(burst),
        burst_error_share=round(share, 3),
        errors_outside_windows=sum(r.status != 200 for r in clean),
        hung=hung(requests),
    )
