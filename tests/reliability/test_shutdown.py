"""Shutdown under load: SIGTERM while requests are in flight, for every pattern.

Promises, each measured per request by raw-socket clients (tests/reliability/drain.py defines
"accepted" and the outcomes):

- every request the server accepted is answered: the requests in its final stats equal the
  complete responses the clients received, with none partial and none left hanging;
- new connections are refused once the signal has been handled (within REFUSE_WITHIN), and
  none is let in after a refusal;
- exit status 0 within --drain-timeout; requests still running when it runs out are answered
  503 with Retry-After on uvicorn (granian kills its worker: they get no answer, recorded);
- a second SIGTERM exits within FORCED_EXIT_WITHIN; `serve` writes no files, so the files
  tested are those of `carebench loadtest --output/--csv`, signalled twice: each is absent or
  complete, never truncated, and the server it started is not left running.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import pytest

from carebench.patterns.base import PATTERNS
from carebench.server.process import ServerProcess
from tests.reliability.conftest import Figures, long_runs
from tests.reliability.drain import DrainLoad, final_stats

PART = "shutdown"
pytestmark = pytest.mark.slow

#: Clients kept sending through the signal (each has one request in flight at a time).
CLIENTS = 48 if long_runs() else 12
#: Backend latency: long enough that requests are in flight when the signal lands.
LATENCY = ("200ms", "400ms")
DRAIN_TIMEOUT = 5.0
#: Load before the signal: the clients are all sending by then.
LOAD_BEFORE_SIGNAL = 0.5
#: uvicorn checks for the signal every 0.1 s; the rest is slack for a busy machine.
REFUSE_WITHIN = 1.0
#: A second SIGTERM ends the server within this (uvicorn: 0.25 s for the 503s, then exit).
FORCED_EXIT_WITHIN = 1.0
#: Beyond --drain-timeout, for the process to end once its drain is over (granian: killing
#: and reaping its worker).
EXIT_SLACK = {"uvicorn": 0.5, "granian": 1.0}
#: `carebench loadtest` exits within this of its last signal (it stops its server first).
LOADTEST_EXIT_WITHIN = 2.0
#: Requests that outlive the drain: the backend takes longer than the drain timeout.
SLOW_LATENCY = ("2500ms", "3000ms")
CUT_DRAIN_TIMEOUT = 1.0


def granian_patterns() -> list[str]:
    """granian gets the basic drain for one pattern, for all in the long variant."""
    return PATTERNS.names() if long_runs() else ["workerpool"]


@dataclass(slots=True)
class Shutdown:
    """What one shutdown under load measured."""

    load: DrainLoad
    exit_code: int
    #: From the first signal to the process's exit.
    exit_seconds: float
    #: From the second signal to the exit (None: one signal).
    forced_exit_seconds: float | None
    in_flight_at_signal: int
    output: list[str]
    #: Requests the server itself had admitted and not finished when the signal was sent
    #: (its pattern's in_flight on /metrics; -1 when not read: the count moves under load).
    accepted_at_signal: int = -1

    def first_refusal(self) -> float | None:
        """Seconds from the signal to the first refused connection."""
        refused = self.load.connects.refused_at
        return min(refused) - self.load.signalled_at if refused else None

    def last_answer(self) -> float:
        """Seconds from the signal to the last complete response."""
        answered = [s.finished for s in self.load.requests if s.outcome == "answered"]
        return max(answered, default=self.load.signalled_at) - self.load.signalled_at


def serve_flags(
    server: str, drain_timeout: float, latency: tuple[str, str], pattern: str = "workerpool"
) -> list[str]:
    return [
        "--server", server, "--pattern", pattern, "--drain-timeout", f"{drain_timeout:g}",
        "--min-latency", latency[0], "--max-latency", latency[1],
    ]  # fmt: skip


def shut_down_under_load(
    serve_args: list[str], in_flight: int, second_signal: bool = False
) -> Shutdown:
    """Serve, load with CLIENTS, SIGTERM once `in_flight` requests are in flight (twice with
    `second_signal`: once the drain refuses connections), and wait for the exit.

    With `in_flight` == CLIENTS every client waits for its answer when the signal is sent,
    so the server's own count of the requests it accepted is read just before it.
    """
    server = ServerProcess(["--error-rate", "0", "--quiet", *serve_args])
    with server:
        return asyncio.run(_drive(server, in_flight, second_signal))


def _accepted(url: str) -> int:
    with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
        accepted: int = json.load(response)["pattern_state"]["in_flight"]
        return accepted


async def _drive(server: ServerProcess, in_flight: int, second_signal: bool) -> Shutdown:
    address = urlsplit(server.url)
    assert address.hostname is not None and address.port is not None
    load = DrainLoad(address.hostname, address.port, CLIENTS)
    clients = asyncio.create_task(load.run())
    started = time.monotonic()
    while load.in_flight() < in_flight or time.monotonic() - started < LOAD_BEFORE_SIGNAL:
        assert time.monotonic() - started < 20, f"never {in_flight} requests in flight"
        await asyncio.sleep(0.01)
    accepted = await asyncio.to_thread(_accepted, server.url) if in_flight == CLIENTS else -1
    load.signalled_at = time.monotonic()
    server.terminate(signal.SIGTERM)
    at_signal = load.in_flight()
    exited = asyncio.create_task(asyncio.to_thread(server.stop, signal.SIGTERM, 60.0))
    forced_at = None
    if second_signal:
        refused = asyncio.create_task(load.refused.wait())
        await asyncio.wait([refused, exited], return_when=asyncio.FIRST_COMPLETED)
        refused.cancel()
        forced_at = time.monotonic()  # the drain is under way: connections are refused
        os.kill(server.pid, signal.SIGTERM)
    exit_code = await exited
    ended = time.monotonic()
    load.stop.set()
    await clients
    return Shutdown(
        load=load,
        exit_code=exit_code,
        exit_seconds=ended - load.signalled_at,
        forced_exit_seconds=None if forced_at is None else ended - forced_at,
        in_flight_at_signal=at_signal,
        output=server.output,
        accepted_at_signal=accepted,
    )


def reconcile(run: Shutdown, figures: Figures) -> dict[str, int]:
    """Record the per-request accounting; the counts the assertions use."""
    outcomes = run.load.outcomes()
    statuses = run.load.statuses()
    counted = final_stats(run.output)
    answered = outcomes["answered"]
    lost = outcomes["partial"] + outcomes["timeout"]
    if counted:
        lost += abs(counted["total"] - answered)
    else:  # killed before it could count: what it had accepted and did not answer
        assert run.accepted_at_signal >= 0, "no final stats and no count of accepted requests"
        lost += max(0, run.accepted_at_signal - run.load.answered_after_signal())
    unexplained_5xx = sum(n for status, n in statuses.items() if status >= 500 and status != 503)
    no_retry_after = sum(
        1
        for sent in run.load.requests
        if sent.outcome == "answered" and sent.status in (429, 503) and not sent.retry_after
    )
    tracebacks = sum(1 for line in run.output if "Traceback" in line)
    refusal = run.first_refusal()
    figures.add(
        clients=CLIENTS,
        signals=2 if run.forced_exit_seconds is not None else 1,
        requests_sent=run.load.written(),
        in_flight_at_signal=run.in_flight_at_signal,
        answered=answered,
        answered_after_signal=run.load.answered_after_signal(),
        answered_503=statuses[503],
        final_stats_printed=bool(counted),
        lost_accepted_requests=lost,
        partial_responses=outcomes["partial"],
        hung_requests=outcomes["timeout"],
        closed_without_response=outcomes["closed"],
        refused_connects=len(run.load.connects.refused_at),
        connects_let_in_after_refusal=run.load.connects.accepted_after_refusal(),
        first_refusal_s=round(refusal, 3) if refusal is not None else -1.0,
        last_answer_s=round(run.last_answer(), 3),
        server_errors_5xx=unexplained_5xx,
        rejections_without_retry_after=no_retry_after,
        tracebacks=tracebacks,
        exit_code=run.exit_code,
        exit_s=round(run.exit_seconds, 3),
    )
    if run.accepted_at_signal >= 0:
        figures.add(accepted_at_signal=run.accepted_at_signal)
    if counted:
        figures.add(counted_by_server=counted["total"])
    return {
        "answered": answered,
        "lost": lost,
        "counted": counted.get("total", -1),
        "unexplained_5xx": unexplained_5xx,
        "no_retry_after": no_retry_after,
        "tracebacks": tracebacks,
    }


def assert_refuses_new_connections(run: Shutdown) -> None:
    refusal = run.first_refusal()
    assert refusal is not None, "no connection was refused after the signal"
    assert refusal <= REFUSE_WITHIN, f"first refusal {refusal:.3f}s after the signal"
    assert run.load.connects.accepted_after_refusal() == 0


def log_problems(output: list[str]) -> list[str]:
    return [line for line in output if "Traceback" in line or line.startswith("ERROR")]


@pytest.mark.parametrize(
    ("server", "pattern"),
    [("uvicorn", name) for name in PATTERNS.names()]
    + [("granian", name) for name in granian_patterns()],
)
def test_sigterm_answers_every_accepted_request(
    server: str, pattern: str, figures: Figures
) -> None:
    """SIGTERM under load: every accepted request answered and counted, new connections
    refused, exit 0 well within the drain timeout, nothing alarming logged."""
    run = shut_down_under_load(serve_flags(server, DRAIN_TIMEOUT, LATENCY, pattern), CLIENTS // 2)
    figures.add(server=server, pattern=pattern, drain_timeout_s=DRAIN_TIMEOUT)
    counts = reconcile(run, figures)
    assert run.exit_code == 0, "\n".join(run.output[-20:])
    assert run.exit_seconds < DRAIN_TIMEOUT
    assert counts["lost"] == 0, run.load.outcomes()
    assert counts["counted"] == counts["answered"]
    assert run.load.answered_after_signal() > 0, "the signal found no request to drain"
    assert counts["unexplained_5xx"] == 0 and counts["no_retry_after"] == 0
    assert_refuses_new_connections(run)
    assert log_problems(run.output) == []


def test_uvicorn_answers_requests_past_the_drain_timeout_503(figures: Figures) -> None:
    """Requests still running when --drain-timeout runs out are answered 503 with
    Retry-After and counted; exit 0 within the drain timeout; no traceback."""
    run = shut_down_under_load(serve_flags("uvicorn", CUT_DRAIN_TIMEOUT, SLOW_LATENCY), CLIENTS)
    figures.add(server="uvicorn", pattern="workerpool", drain_timeout_s=CUT_DRAIN_TIMEOUT)
    counts = reconcile(run, figures)
    assert run.exit_code == 0
    assert run.exit_seconds <= CUT_DRAIN_TIMEOUT + EXIT_SLACK["uvicorn"]
    assert counts["lost"] == 0 and counts["counted"] == counts["answered"]
    assert run.load.statuses()[503] >= run.in_flight_at_signal
    assert counts["no_retry_after"] == 0 and counts["unexplained_5xx"] == 0
    assert_refuses_new_connections(run)
    refusal = run.first_refusal()
    assert refusal is not None and refusal < run.last_answer(), "refused only after the drain"
    assert counts["tracebacks"] == 0 and log_problems(run.output) == []


def test_granian_kills_requests_past_the_drain_timeout_unanswered(figures: Figures) -> None:
    """granian: exit 0 within the drain timeout (its worker is killed then); the requests
    still running get no answer, which granian gives the app no way to send (recorded as
    lost accepted requests, not hidden)."""
    run = shut_down_under_load(serve_flags("granian", CUT_DRAIN_TIMEOUT, SLOW_LATENCY), CLIENTS)
    figures.add(server="granian", pattern="workerpool", drain_timeout_s=CUT_DRAIN_TIMEOUT)
    counts = reconcile(run, figures)
    assert run.exit_code == 0
    assert run.exit_seconds <= CUT_DRAIN_TIMEOUT + EXIT_SLACK["granian"]
    assert run.load.outcomes()["partial"] == 0
    assert counts["answered"] == 0 and run.load.outcomes()["closed"] >= run.in_flight_at_signal
    assert_refuses_new_connections(run)


@pytest.mark.parametrize("server", ["uvicorn", "granian"])
def test_second_sigterm_forces_a_quick_exit(server: str, figures: Figures) -> None:
    """A second SIGTERM during a long drain ends the server within FORCED_EXIT_WITHIN;
    on uvicorn the running requests are answered 503 first."""
    run = shut_down_under_load(serve_flags(server, 30.0, SLOW_LATENCY), CLIENTS, second_signal=True)
    assert run.forced_exit_seconds is not None
    figures.add(
        server=server,
        pattern="workerpool",
        drain_timeout_s=30.0,
        forced_exit_s=round(run.forced_exit_seconds, 3),
    )
    counts = reconcile(run, figures)
    assert run.exit_code == 0
    assert run.forced_exit_seconds <= FORCED_EXIT_WITHIN
    assert run.load.outcomes()["partial"] == 0
    assert_refuses_new_connections(run)
    if server == "uvicorn":
        assert counts["lost"] == 0 and counts["counted"] == counts["answered"]
        assert run.load.statuses()[503] >= run.in_flight_at_signal
        assert counts["tracebacks"] == 0 and log_problems(run.output) == []


def _loadtest(tmp_path: Path) -> subprocess.Popen[str]:
    command = [
        sys.executable, "-m", "carebench", "loadtest", "--pattern", "workerpool",
        "--duration", "20s", "--concurrency", "4", "--min-latency", "5ms",
        "--max-latency", "5ms", "--error-rate", "0",
        "--output", str(tmp_path / "results.json"), "--csv", str(tmp_path / "results.csv"),
    ]  # fmt: skip
    pipe = subprocess.PIPE
    return subprocess.Popen(command, stdout=pipe, stderr=pipe, text=True, cwd=tmp_path)


def _serving(run: subprocess.Popen[str], clients: int) -> psutil.Process:
    """The server the load test started, once the load generator's clients are connected."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for child in psutil.Process(run.pid).children():
            with_clients = [c for c in child.net_connections("tcp") if c.status == "ESTABLISHED"]
            if len(with_clients) >= clients:
                return child
        assert run.poll() is None, run.communicate()
        time.sleep(0.02)
    raise AssertionError("the load test never drove its server")


def _whole_or_absent(tmp_path: Path) -> dict[str, str]:
    """Each output is absent or complete: JSON that parses to results, CSV with full rows."""
    found = {}
    results = tmp_path / "results.json"
    if results.exists():
        document = json.loads(results.read_text(encoding="utf-8"))
        assert isinstance(document, list) and document and document[0]["pattern"] == "workerpool"
        found["json"] = "complete"
    table = tmp_path / "results.csv"
    if table.exists():
        rows = list(csv.reader(table.read_text(encoding="utf-8").splitlines()))
        assert len(rows) >= 2 and all(len(row) == len(rows[0]) for row in rows)
        found["csv"] = "complete"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    return found


@pytest.mark.parametrize(
    ("signum", "signals"),
    [(signal.SIGTERM, 2), (signal.SIGINT, 2), (signal.SIGTERM, 1)],
    ids=["SIGTERM-twice", "SIGINT-twice", "SIGTERM-once"],
)
def test_loadtest_signalled_leaves_whole_files_or_none(
    tmp_path: Path, signum: signal.Signals, signals: int, figures: Figures
) -> None:
    """`carebench loadtest --output --csv` signalled mid-run: once, it stops and writes both
    files whole; twice, it exits at once with each file absent or whole; either way exit 130
    and the server it started is stopped, not orphaned."""
    with _loadtest(tmp_path) as run:
        server = _serving(run, clients=4)
        for _ in range(signals):
            signalled = time.monotonic()
            run.send_signal(signum)
            time.sleep(0.05)  # the second one while the first one's stop is under way
        _, stderr = run.communicate(timeout=30)
        exit_seconds = time.monotonic() - signalled
    found = _whole_or_absent(tmp_path)
    gone = psutil.wait_procs([server], timeout=DRAIN_TIMEOUT)[0]
    figures.add(
        signal=signum.name,
        signals=signals,
        exit_code=run.returncode,
        exit_s=round(exit_seconds, 3),
        files_complete=len(found),
        files_truncated=0,  # _whole_or_absent fails the test on a truncated file
        servers_left_running=0 if gone else 1,
    )
    assert run.returncode == 130, stderr
    assert exit_seconds <= LOADTEST_EXIT_WITHIN
    assert "Traceback" not in stderr
    assert gone, "the load test's server was left running"
    if signals == 1:
        assert found == {"json": "complete", "csv": "complete"}
