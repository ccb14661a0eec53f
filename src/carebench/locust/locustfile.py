"""carebench's Locust users: load from several machines, measured as `carebench loadtest` does.

    locust -f $(carebench locustfile) --host http://SERVER:8000 --headless \\
        --users 200 --spawn-rate 200 --run-time 60s --carebench-output run.json ...

Each user is one closed-loop client (as `loadtest --concurrency` counts them): it asks for a
patient chosen by --carebench-ids, with an X-Request-Priority drawn from
--carebench-priorities, at the --carebench-endpoint path, back to back. Every request is
recorded in HdrHistograms by outcome, classified as carebench classifies it. At the end the
master asks every worker to stop sending; each waits for its requests in flight and sends the
master its histograms (a Locust custom message); the master merges them exactly and writes
--carebench-output, which `carebench report` reads. Without --master, one process does both.
docs/locust.md says how to run it across machines.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import urllib.request
from collections.abc import Mapping
from typing import Any, NoReturn

import gevent
import gevent.event
from locust import FastHttpUser, constant, events, task
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from carebench.errors import ConfigError
from carebench.loadgen.config import LoadConfig
from carebench.loadgen.endpoints import ENDPOINTS
from carebench.loadgen.engine import CONNECTION_ERROR_BACKOFF, MIN_BACKOFF
from carebench.loadgen.ids import parse_ids
from carebench.loadgen.priorities import parse_priorities
from carebench.loadgen.results import RunRecorder
from carebench.loadgen.sampler import SAMPLE_INTERVAL
from carebench.locust.options import add_arguments, appending, load_config, output_path
from carebench.locust.reports import (
    TIMELINE_INTERVAL,
    LocustRun,
    ReportError,
    RunMerge,
    decode_report,
    earlier_results,
    encode_report,
    outcome_of,
    retry_after_seconds,
    worker_report,
    write_results,
)

#: Master -> workers: stop sending, wait for what is in flight, then report.
STOP_MESSAGE = "carebench_stop"
#: Worker -> master: an encoded WorkerReport.
REPORT_MESSAGE = "carebench_report"
#: How long past the request timeout the master waits for every worker's report.
REPORT_GRACE = 10.0
#: How often a draining generator looks at its requests in flight.
DRAIN_POLL = 0.005

log = logging.getLogger("carebench.locust")


class Generator:
    """One process's load (a worker's, or a run without --master): what to send, and a
    RunRecorder of what came back."""

    def __init__(self, load: LoadConfig) -> None:
        self.load = load
        endpoint = ENDPOINTS[load.endpoint]
        self.prefix, self.suffix = endpoint.prefix, endpoint.suffix
        #: What Locust's own statistics group the requests under.
        self.name = f"{endpoint.prefix}[id]{endpoint.suffix}"
        self.choose_id = parse_ids(load.ids)
        self.choose_priority = parse_priorities(load.priorities)
        self.started_unix = time.time()
        self.recorder = RunRecorder(time.perf_counter(), TIMELINE_INTERVAL)
        self.in_flight = 0
        self.stopping = False
        self.halted = gevent.event.Event()

    def send(self, user: FastHttpUser) -> None:
        """One request (a user's task); once stopping, the user waits until Locust ends it."""
        if self.stopping:
            self.halted.wait()
            return
        priority = self.choose_priority()
        headers = {"X-Request-Priority": priority} if priority else None
        path = self.prefix + self.choose_id() + self.suffix
        self.in_flight += 1
        try:
            sent = time.perf_counter()
            response = user.client.get(path, headers=headers, name=self.name)
            done = time.perf_counter()
            status = response.status_code or 0
            # FastHttpSession sets `error` on failed responses only.
            error = getattr(response, "error", None)
            timed_out = isinstance(error, TimeoutError | gevent.Timeout)
            outcome = outcome_of(status, timed_out)
            self.recorder.record(outcome, done - sent, done, status, priority=priority)
        finally:
            self.in_flight -= 1
        if outcome == "connection_error":
            gevent.sleep(CONNECTION_ERROR_BACKOFF)
        elif outcome == "rejected" and self.load.honor_retry_after:
            header = response.headers.get("Retry-After") if response.headers else None
            seconds = retry_after_seconds(header if isinstance(header, str) else None)
            gevent.sleep(max(seconds, MIN_BACKOFF))

    def drain(self) -> None:
        """Stop sending and wait (at most the request timeout) for the requests in flight."""
        self.stopping = True
        deadline = time.monotonic() + self.load.timeout + 1.0
        while self.in_flight and time.monotonic() < deadline:
            gevent.sleep(DRAIN_POLL)


class RunState:
    """This process's part of the current test: a generator (not on the master) and the
    merge (not on a worker)."""

    generator: Generator | None = None
    merge: RunMerge | None = None
    #: The master's greenlet reading the server's /metrics through the run.
    sampler: Any = None
    ended_unix: float = 0.0
    missing: tuple[str, ...] = ()


STATE = RunState()


class CarebenchUser(FastHttpUser):
    """A closed-loop client: the next request as soon as the last one is answered."""

    wait_time = constant(0)
    #: https targets are verified against the system's CAs.
    insecure = False

    def __init__(self, environment: Environment) -> None:
        generator = _generator()
        # FastHttpUser reads these when it builds its client, in its own __init__.
        self.network_timeout = self.connection_timeout = generator.load.timeout
        self.default_headers = generator.load.headers
        super().__init__(environment)

    @task
    def patient(self) -> None:
        _generator().send(self)


def _generator() -> Generator:
    if STATE.generator is None:
        raise RuntimeError("carebench: a user started before the test did")
    return STATE.generator


def _load(environment: Environment) -> LoadConfig:
    options = environment.parsed_options
    users = int(getattr(options, "num_users", None) or 1)
    run_time = getattr(options, "run_time", None)
    return load_config(options, users, float(run_time) if run_time else None)


def on_init(environment: Environment, **_: Any) -> None:
    """Check the options once, where they are given (not on a worker: the master sends it
    its own with every spawn), and wire the messages."""
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        runner.register_message(STOP_MESSAGE, on_stop_message, concurrent=True)
        return
    if not environment.host:
        _refuse("--host: give the carebench server's URL, e.g. --host http://127.0.0.1:8000")
    options = environment.parsed_options
    path = output_path(options)
    try:
        load = _load(environment)
        if path:  # a file that cannot be appended to is refused now, not after the run
            earlier_results(path, appending(options))
    except ConfigError as error:
        _refuse(str(error))
    # Workers get the token itself, so the file need not exist on their machines.
    options.carebench_token, options.carebench_token_file = load.token, None  # type: ignore[union-attr]
    if isinstance(runner, MasterRunner):
        runner.register_message(REPORT_MESSAGE, on_report)


def _refuse(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def on_test_start(environment: Environment, **_: Any) -> None:
    runner, load = environment.runner, _load(environment)
    if not isinstance(runner, MasterRunner):
        STATE.generator = Generator(load)
    if not isinstance(runner, WorkerRunner):
        merge = RunMerge(LocustRun(load, str(environment.host).rstrip("/"), time.time()))
        STATE.merge, STATE.missing = merge, ()
        STATE.sampler = gevent.spawn(_sample_server, merge, load.headers)


def _sample_server(merge: RunMerge, headers: Mapping[str, str]) -> None:
    """Master: the server's state every SAMPLE_INTERVAL, as `loadtest` samples it, until
    the run ends (or at once, if the target is not a carebench server)."""
    url = merge.run.target + "/metrics"
    while True:
        document = _get_json(url, headers)
        if document is not None and not merge.add_sample(document, time.time()):
            return
        gevent.sleep(SAMPLE_INTERVAL)


def _get_json(url: str, headers: Mapping[str, str]) -> Any:
    """A JSON document (a --token's Authorization sent along), or None if none came."""
    request = urllib.request.Request(url, headers=dict(headers))
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())
    except (OSError, ValueError):  # URLError is an OSError
        return None


def on_stop_message(environment: Environment, **_: Any) -> None:
    """Worker: the master ends the test; drain, then send everything measured."""
    runner = environment.runner
    assert isinstance(runner, WorkerRunner)
    generator = STATE.generator or Generator(_load(environment))
    generator.drain()
    report = worker_report(generator.recorder, runner.client_id, generator.started_unix)
    runner.send_message(REPORT_MESSAGE, {"report": encode_report(report).decode()})


def on_report(environment: Environment, msg: Any, **_: Any) -> None:
    """Master: a worker's report."""
    if STATE.merge is None:
        return
    try:
        STATE.merge.add(decode_report(msg.data["report"]))
    except (ReportError, KeyError, TypeError) as error:
        log.error("carebench: %s", error)


def on_test_stopping(environment: Environment, **_: Any) -> None:
    """Master: stop every worker and collect their reports; alone: drain and report."""
    runner, merge = environment.runner, STATE.merge
    if isinstance(runner, WorkerRunner) or merge is None:
        return
    if isinstance(runner, MasterRunner):
        workers = [node.id for node in runner.clients.all]
        runner.send_message(STOP_MESSAGE)
        deadline = time.monotonic() + merge.run.load.timeout + REPORT_GRACE
        while merge.missing(workers) and time.monotonic() < deadline:
            gevent.sleep(DRAIN_POLL)
        STATE.missing = tuple(merge.missing(workers))
    else:
        generator = _generator()
        generator.drain()
        merge.add(worker_report(generator.recorder, "local", generator.started_unix))
    STATE.ended_unix = time.time()


def on_test_stop(environment: Environment, **_: Any) -> None:
    """Master (or alone): write the merged result."""
    merge = STATE.merge
    if isinstance(environment.runner, WorkerRunner) or merge is None:
        return
    STATE.merge = None  # written once per test
    if STATE.sampler is not None:
        STATE.sampler.kill()
    if STATE.missing:
        log.error("carebench: no report from worker(s) %s", ", ".join(STATE.missing))
    document = _get_json(merge.run.target + "/metrics", merge.run.load.headers)
    metrics = document if isinstance(document, dict) else None
    duration = STATE.ended_unix - merge.run.started_unix
    result = merge.result(duration, metrics, interrupted=bool(STATE.missing))
    path = output_path(environment.parsed_options)
    saved = ""
    if path:
        try:
            count = write_results(path, result, appending(environment.parsed_options))
            saved = f"; results in {path} ({count} run(s))"
        except (ConfigError, OSError) as error:
            log.error("carebench: cannot write %s: %s", path, error)
            print(json.dumps([result], indent=2))  # the run is not lost
    outcomes = ", ".join(f"{name} {n}" for name, n in result["outcomes"].items())
    log.info(
        "carebench: %d requests from %d generator(s) in %.1f s (%s), p99 %.3f ms%s",
        result["total_requests"],
        len(merge.reports),
        duration,
        outcomes,
        result["latency_ms"]["p99"],
        saved,
    )


def _listen(hook: Any, handler: Any) -> None:
    # Locust's EventHook methods carry no annotations: called through Any, not per line.
    hook.add_listener(handler)


_listen(events.init_command_line_parser, add_arguments)
_listen(events.init, on_init)
_listen(events.test_start, on_test_start)
_listen(events.test_stopping, on_test_stopping)
_listen(events.test_stop, on_test_stop)
