"""`loadtest --generators N`: N generator processes share one run; their results merge exactly.

Each generator (loadgen/generator_process.py) is a spawned process with its share of the load
(loadgen/shares.py), pinned to a core of its own where there are cores to spare. They start
together on the machine's monotonic clock and send back their recorders' exact state; the
merged recorder holds every request of the run, so its percentiles are those of the whole run
(histograms are added, never percentiles averaged). Every wait is bounded: a generator that
fails, dies or falls silent fails the run with the cause, and none outlives the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

import msgspec

from carebench.loadgen.describe import ScheduleTally
from carebench.loadgen.generator_process import GeneratorJob, generator_main
from carebench.loadgen.results import GeneratorRun, RunRecorder
from carebench.loadgen.wire import (
    ENCODER,
    FROM_GENERATOR,
    Begin,
    Failed,
    Finished,
    GeneratorReport,
    Progress,
    Ready,
    Stop,
    recorder_from_state,
    watch_blocking,
)

#: Longest a generator may take to start (a fresh interpreter importing carebench).
READY_TIMEOUT = 60.0
#: Between sending Begin and the start: every generator is waiting when it comes.
START_MARGIN = 0.25
#: A generator that sends nothing (its progress is a heartbeat) this long is taken as hung.
SILENCE_LIMIT = 30.0
#: How long a stopped generator gets to exit before it is terminated, then killed.
EXIT_GRACE = 5.0


class GeneratorFailed(RuntimeError):
    """A generator process failed, died or stopped answering: the run cannot be merged."""


@dataclass(frozen=True, slots=True)
class Placement:
    """Where one generator runs: its CPUs (empty: not pinned) and whether the server's too."""

    cpus: list[int]
    shares_server_core: bool | None


def place_generators(
    count: int, server_cpus: set[int] | None, spare_cpus: set[int] | None
) -> list[Placement]:
    """One spare core per generator while they last, then the spare cores again in turn.

    The server under test keeps its core to itself: a generator there would measure a
    server with less CPU. Only with no spare core at all (one CPU, or a --target whose CPUs
    are unknown, where `spare_cpus` are all of ours) are generators placed regardless.
    """
    spare = sorted(spare_cpus or [])
    if not spare:
        return [Placement([], None if server_cpus is None else True)] * count
    placements = []
    for index in range(count):
        cpu = spare[index % len(spare)]
        shares = None if server_cpus is None else cpu in server_cpus
        placements.append(Placement([cpu], shares))
    return placements


@dataclass(slots=True)
class _Generator:
    index: int
    process: BaseProcess
    connection: Connection
    heard: float = field(default_factory=time.monotonic)
    ready: bool = False
    completed: int = 0
    report: GeneratorReport | None = None
    failure: str | None = None

    @property
    def settled(self) -> bool:
        return self.report is not None or self.failure is not None


@dataclass(frozen=True, slots=True)
class MergedRun:
    """The generators' results as one run."""

    recorder: RunRecorder
    duration: float
    interrupted: bool
    runs: list[GeneratorRun]
    sent: int
    scheduled: int
    last_send: float

    def schedule(self, rate: float, poisson: bool, start: float, end: float) -> ScheduleTally:
        return ScheduleTally(rate, poisson, start, end, self.scheduled, self.sent, self.last_send)


class GeneratorPool:
    """The generator processes of one run, started on entering and all gone on leaving."""

    def __init__(self, jobs: Sequence[GeneratorJob]) -> None:
        self._jobs = list(jobs)
        self._generators: list[_Generator] = []
        self._changed = asyncio.Event()
        self._stopping = False
        self.started = 0.0

    def __enter__(self) -> GeneratorPool:
        context = multiprocessing.get_context("spawn")
        # A Ctrl-C while a generator starts is the pool's to handle, not a traceback in the
        # child: both signals stay blocked until the child has set its own handlers.
        blocked = {signal.SIGINT, signal.SIGTERM}
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
        try:
            for index, job in enumerate(self._jobs):
                ours, theirs = context.Pipe()
                process = context.Process(
                    target=generator_main,
                    args=(theirs, job),
                    name=f"carebench-generator-{index}",
                    daemon=True,
                )
                self._generators.append(_Generator(index, process, ours))
                process.start()
                theirs.close()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        loop = asyncio.get_running_loop()
        for generator in self._generators:
            watch_blocking(loop, generator.connection.fileno(), self._read, generator)
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Stop every generator still running: Stop, then SIGTERM, then SIGKILL, each bounded."""
        loop = asyncio.get_running_loop()
        for generator in self._generators:
            with contextlib.suppress(OSError, ValueError):
                loop.remove_reader(generator.connection.fileno())
            self._send(generator, Stop())
        deadline = time.monotonic() + EXIT_GRACE
        for generator in self._generators:
            generator.process.join(max(deadline - time.monotonic(), 0.0))
        for generator in self._generators:
            if generator.process.is_alive():
                generator.process.terminate()
                generator.process.join(EXIT_GRACE)
            if generator.process.is_alive():
                generator.process.kill()
                generator.process.join(EXIT_GRACE)
            generator.connection.close()

    @property
    def stopping(self) -> bool:
        return self._stopping

    @stopping.setter
    def stopping(self, value: bool) -> None:
        """Interrupted: every generator stops sending and reports what it measured."""
        if value and not self._stopping:
            for generator in self._generators:
                self._send(generator, Stop())
        self._stopping = value

    @property
    def completed(self) -> int:
        """Requests completed so far in the measured window, all generators together."""
        return sum(generator.completed for generator in self._generators)

    async def ready(self) -> None:
        """Wait until every generator is ready to start (GeneratorFailed after READY_TIMEOUT)."""
        deadline = time.monotonic() + READY_TIMEOUT
        await self._until(
            lambda: all(g.ready for g in self._generators), deadline, "to start", silence=False
        )

    def begin(self, warmup: float) -> float:
        """Start them all together; returns when measuring starts (after `warmup`)."""
        at = time.perf_counter() + START_MARGIN
        for generator in self._generators:
            self._send(generator, Begin(at))
        self.started = at + warmup
        return self.started

    async def finish(self) -> MergedRun:
        """Wait for every generator's report and merge them."""
        await self._until(lambda: all(g.settled for g in self._generators), None, "to finish")
        reports = [generator.report for generator in self._generators]
        return merge_reports(
            [report for report in reports if report is not None],
            self.started,
            [job.cpus for job in self._jobs],
            [job.share_server_core for job in self._jobs],
        )

    async def _until(
        self, done: Callable[[], bool], deadline: float | None, what: str, silence: bool = True
    ) -> None:
        while True:
            self._changed.clear()
            self._raise_failure()
            if done():
                return
            now = time.monotonic()
            if deadline is not None and now > deadline:
                late = [str(g.index) for g in self._generators if not g.ready]
                raise GeneratorFailed(
                    f"generator {', '.join(late)} took more than {READY_TIMEOUT:g} s {what}"
                )
            for generator in self._generators:
                if silence and not generator.settled and now - generator.heard > SILENCE_LIMIT:
                    raise GeneratorFailed(
                        f"generator {generator.index} sent nothing for {SILENCE_LIMIT:g} s "
                        "(hung or starved of CPU)"
                    )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), 1.0)

    def _raise_failure(self) -> None:
        for generator in self._generators:
            if generator.failure is not None:
                raise GeneratorFailed(f"generator {generator.index} failed: {generator.failure}")

    def _read(self, generator: _Generator) -> None:
        try:
            while generator.connection.poll():
                self._take(generator, FROM_GENERATOR.decode(generator.connection.recv_bytes()))
        except (EOFError, OSError):
            asyncio.get_running_loop().remove_reader(generator.connection.fileno())
            if not generator.settled:
                generator.process.join(EXIT_GRACE)
                code = generator.process.exitcode
                generator.failure = f"it exited (code {code}) without a report"
        except msgspec.DecodeError as error:
            generator.failure = f"unreadable message ({error})"
        self._changed.set()

    def _take(self, generator: _Generator, message: object) -> None:
        generator.heard = time.monotonic()
        if isinstance(message, Ready):
            generator.ready = True
        elif isinstance(message, Progress):
            generator.completed = message.completed
        elif isinstance(message, Finished):
            generator.report = message.report
        elif isinstance(message, Failed):
            generator.failure = message.error

    @staticmethod
    def _send(generator: _Generator, message: Begin | Stop) -> None:
        with contextlib.suppress(OSError, ValueError):
            generator.connection.send_bytes(ENCODER.encode(message))


def merge_reports(
    reports: Sequence[GeneratorReport],
    started: float,
    cpus: Sequence[list[int]],
    shares_server_core: Sequence[bool | None],
) -> MergedRun:
    """One run from every generator's report: recorders added, counts summed, the run
    lasting until the last generator ended."""
    merged = RunRecorder(started)
    runs: list[GeneratorRun] = []
    for index, report in enumerate(reports):
        recorder = recorder_from_state(report.recorder)
        merged.merge(recorder)
        runs.append(
            {
                "index": index,
                "cpus": list(cpus[index]),
                "shares_server_core": shares_server_core[index],
                "requests": recorder.total,
                "cpu_seconds": round(report.cpu_seconds, 3),
            }
        )
    return MergedRun(
        recorder=merged,
        duration=max((report.ended for report in reports), default=started) - started,
        interrupted=any(report.interrupted for report in reports),
        runs=runs,
        sent=sum(report.sent for report in reports),
        scheduled=sum(report.scheduled for report in reports),
        last_send=max((report.last_send for report in reports), default=0.0),
    )
