"""One generator process of `loadtest --generators N`: its share of the load, its own engine.

Started with multiprocessing's `spawn` context (a fresh interpreter, no copy of the parent's
running event loop). It pins itself, says `Ready`, waits for `Begin` (the common start on the
machine's monotonic clock, which time.perf_counter reads in every process), warms up and
measures from there, and sends back its recorder's exact state. Ctrl-C is the parent's to
handle (it sends `Stop`); the generator dies with its parent and stops when its pipe closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import math
import os
import signal
import sys
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

from carebench.loadgen.channels import HttpChannel
from carebench.loadgen.client import parse_url
from carebench.loadgen.config import LoadConfig
from carebench.loadgen.engine import Engine, Schedule
from carebench.loadgen.ids import parse_ids
from carebench.loadgen.phases import run_measured, warm_up
from carebench.loadgen.priorities import parse_priorities
from carebench.loadgen.results import RunRecorder
from carebench.loadgen.shares import GeneratorShare
from carebench.loadgen.tls import ClientTLSConfig, client_context
from carebench.loadgen.wire import (
    ENCODER,
    TO_GENERATOR,
    Begin,
    Failed,
    Finished,
    GeneratorReport,
    Progress,
    Ready,
    Stop,
    recorder_state,
    watch_blocking,
)

#: How often a generator reports its completed requests (also its heartbeat).
PROGRESS_EVERY = 0.25
#: prctl(2) option: the signal a process gets when its parent exits.
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True, slots=True)
class GeneratorJob:
    """What one generator process needs (pickled once, when it is started)."""

    url: str
    load: LoadConfig
    share: GeneratorShare
    #: The TLS client settings for an https:// url (None: plain HTTP).
    tls: ClientTLSConfig | None = None
    #: A server's own --tls-cert to trust (servers the load test started).
    server_cert: str | None = None
    cpus: list[int] = field(default_factory=list)
    #: Whether `cpus` include the server's (None: the server's CPUs are unknown).
    share_server_core: bool | None = None


def generator_main(connection: Connection, job: GeneratorJob) -> None:
    """The process's entry point: run the share and send its report (or why it failed)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    _die_with_parent()
    try:
        if job.cpus:
            os.sched_setaffinity(0, job.cpus)
        import uvloop

        report = uvloop.run(_generate(connection, job))
        connection.send_bytes(ENCODER.encode(Finished(report)))
    except Exception as error:
        with contextlib.suppress(OSError):
            connection.send_bytes(ENCODER.encode(Failed(f"{type(error).__name__}: {error}")))
        sys.exit(1)


def _die_with_parent() -> None:
    """SIGTERM this process when its parent dies (Linux), so none is left behind even when
    the load test is killed outright."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() == 1:  # the parent died before prctl took effect
        sys.exit(1)


class Orders:
    """The parent's messages as they arrive: the start time, then perhaps a stop."""

    def __init__(self, connection: Connection, engine: Engine) -> None:
        self._connection = connection
        self._engine = engine
        self._loop = asyncio.get_running_loop()
        self.begin: asyncio.Future[float] = self._loop.create_future()
        watch_blocking(self._loop, connection.fileno(), self._read)

    def _read(self) -> None:
        try:
            while self._connection.poll():
                message = TO_GENERATOR.decode(self._connection.recv_bytes())
                if isinstance(message, Begin) and not self.begin.done():
                    self.begin.set_result(message.at)
                elif isinstance(message, Stop):
                    self._stop()
        except (EOFError, OSError):  # the parent is gone: stop, nobody will read the result
            self._stop()
            self._loop.remove_reader(self._connection.fileno())

    def _stop(self) -> None:
        self._engine.stopping = True
        if not self.begin.done():
            self.begin.set_result(math.nan)

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._loop.remove_reader(self._connection.fileno())


async def _generate(connection: Connection, job: GeneratorJob) -> GeneratorReport:
    load, share = job.load, job.share
    host, port, base, https = parse_url(job.url)
    tls = client_context(job.tls, job.server_cert) if https and job.tls else None
    channels = [
        HttpChannel(host, port, base, load.endpoint, tls=tls, headers=load.headers)
        for _ in range(share.connections)
    ]
    engine = Engine(
        channels,
        parse_ids(load.ids, share.seed),
        load.timeout,
        RunRecorder(time.perf_counter()),  # warm-up only: forgotten at start_measuring
        choose_priority=parse_priorities(load.priorities, share.seed),
        honor_retry_after=load.honor_retry_after,
    )
    orders = Orders(connection, engine)
    connection.send_bytes(ENCODER.encode(Ready()))
    try:
        begin = await orders.begin
        return await _run(connection, engine, job, begin)
    finally:
        orders.close()
        for channel in channels:
            channel.close()


async def _run(
    connection: Connection, engine: Engine, job: GeneratorJob, begin: float
) -> GeneratorReport:
    load = job.load
    started = begin + load.warmup if math.isfinite(begin) else time.perf_counter()
    heartbeat = Heartbeat(connection)
    beating = asyncio.get_running_loop().create_task(heartbeat.run())
    try:
        if not engine.stopping:
            await asyncio.sleep(max(begin - time.perf_counter(), 0.0))
            if load.warmup > 0:
                share = job.share
                await warm_up(engine, load, begin, share.rate, share.shape, share.offset)
            await asyncio.sleep(max(started - time.perf_counter(), 0.0))
        recorder = heartbeat.recorder = RunRecorder(started)
        engine.start_measuring(recorder)
        cpu = time.process_time()
        schedule = None if engine.stopping else await _run_share(engine, job, started)
    finally:
        beating.cancel()
    return GeneratorReport(
        recorder=recorder_state(recorder),
        ended=time.perf_counter(),
        cpu_seconds=time.process_time() - cpu,
        sent=engine.sent,
        last_send=engine.last_send,
        scheduled=schedule.issued if schedule else 0,
        interrupted=engine.stopping,
    )


class Heartbeat:
    """Tells the parent, a few times a second from the start, how many requests completed
    since measuring began (0 while warming up): its progress bar, and proof of life."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self.recorder: RunRecorder | None = None

    async def run(self) -> None:
        while True:
            completed = self.recorder.total if self.recorder is not None else 0
            with contextlib.suppress(OSError):  # the parent is gone: Orders stops the run
                self._connection.send_bytes(ENCODER.encode(Progress(completed)))
            await asyncio.sleep(PROGRESS_EVERY)


def _run_share(engine: Engine, job: GeneratorJob, started: float) -> Awaitable[Schedule | None]:
    """This generator's part of the measured run."""
    share = job.share
    return run_measured(
        engine, job.load, started, share.requests, share.rate, share.shape, share.seed,
        share.offset,
    )  # fmt: skip
