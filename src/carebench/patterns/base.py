"""The Pattern protocol every concurrency strategy implements, its config and registry."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

from carebench.backends.base import Backend
from carebench.errors import ConfigError, DeadlineExceeded, Rejected
from carebench.limits.base import LIMIT_ALGORITHMS
from carebench.loop_clock import LoopClock, RunningLoopClock
from carebench.models import READ, SEARCH, Answer, Query
from carebench.patterns.stats import PatternStats
from carebench.registry import Registry
from carebench.responses import ResponseEncoder
from carebench.settings import FLOAT, INT, MILLISECONDS, SECONDS, setting

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PatternConfig:
    """Settings shared by the patterns (each uses the ones that apply to it)."""

    workers: int = setting(20, "--workers", "worker tasks (workerpool, optimized)", INT)
    queue_size: int = setting(100, "--queue-size", "bounded queue capacity", INT)
    limit: int = setting(
        20, "--limit", "semaphore: requests in flight at most; shedder: its first limit", INT
    )
    max_wait: float = setting(
        0.0, "--max-wait", "semaphore: how long to wait for a permit before rejecting", SECONDS
    )
    rate_limit: float = setting(
        100.0, "--rate-limit", "ratelimit: requests per second admitted", FLOAT
    )
    burst: int = setting(20, "--burst", "ratelimit: bucket size", INT)
    limit_algorithm: str = setting(
        "gradient2",
        "--limit-algorithm",
        "adaptive: how the limit is learned",
        choices=LIMIT_ALGORITHMS.names,
    )
    shed_target_delay: float = setting(
        0.02,
        "--shed-target-delay",
        "shedder: p90 queueing delay its controller holds by refusing the least urgent work",
        MILLISECONDS,
    )
    shed_min_limit: int = setting(
        2, "--shed-min-limit", "shedder: lowest in-flight limit its tuner may set", INT
    )
    shed_max_limit: int = setting(
        200, "--shed-max-limit", "shedder: highest in-flight limit its tuner may set", INT
    )
    codel_target: float = setting(
        0.005,
        "--codel-target",
        "codel: how long a request may wait once the queue has stood for an interval",
        MILLISECONDS,
    )
    codel_interval: float = setting(
        0.1,
        "--codel-interval",
        "codel: how long a request may wait while the queue empties; how long it must stand "
        "to count as congested",
        MILLISECONDS,
    )

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ConfigError(f"--workers ({self.workers}) must be >= 1")
        if self.queue_size < 0:
            raise ConfigError(f"--queue-size ({self.queue_size}) must be >= 0")
        if self.limit < 1:
            raise ConfigError(f"--limit ({self.limit}) must be >= 1")
        if self.max_wait < 0:
            raise ConfigError(f"--max-wait ({self.max_wait:g}) must be >= 0 seconds")
        if self.rate_limit <= 0:
            raise ConfigError(f"--rate-limit ({self.rate_limit:g}) must be > 0 per second")
        if self.burst < 1:
            raise ConfigError(f"--burst ({self.burst}) must be >= 1")
        LIMIT_ALGORITHMS.check(self.limit_algorithm)
        if self.shed_target_delay <= 0:
            raise ConfigError(
                f"--shed-target-delay ({self.shed_target_delay * 1000:g}) must be > 0 ms"
            )
        if not 1 <= self.shed_min_limit <= self.shed_max_limit:
            raise ConfigError(
                f"--shed-min-limit ({self.shed_min_limit}) must be >= 1 and <= "
                f"--shed-max-limit ({self.shed_max_limit})"
            )
        if self.codel_target <= 0:
            raise ConfigError(f"--codel-target ({self.codel_target * 1000:g} ms) must be > 0")
        if self.codel_interval < self.codel_target:
            raise ConfigError(
                f"--codel-interval ({self.codel_interval * 1000:g} ms) must be >= "
                f"--codel-target ({self.codel_target * 1000:g} ms)"
            )


@runtime_checkable
class Pattern(Protocol):
    """How requests are admitted, queued, bounded and shed in front of the backend.

    `submit` returns the answer to the query's lookup (the patient for the legacy endpoint)
    or raises `Rejected` (503), `DeadlineExceeded` (504),
    `BackendError` (500) or `ClientGone` (the client left; nobody reads the answer).

    Every pattern is built as `cls(backend, config, loop_clock)`. `Query.deadline` is on the
    running loop's `loop.time()`, and patterns check it against the loop itself
    (`check_deadline`, `asyncio.timeout_at`, `loop.call_at`), never against `loop_clock`;
    the clock times only what a pattern measures itself (ratelimit's token refill,
    adaptive's round trips), and patterns that measure nothing ignore it.
    """

    name: str
    #: Whether the pattern ever rejects; naive does not.
    bounded: bool
    encoder: ResponseEncoder

    @property
    def capacity(self) -> int | None:
        """Requests it admits right now before rejecting (queued included); None = unbounded."""
        ...

    @property
    def backend_concurrency(self) -> int | None:
        """The most backend queries it runs at once; None = unbounded."""
        ...

    async def start(self) -> None: ...

    async def submit(self, query: Query) -> Answer: ...

    def stats(self) -> PatternStats: ...

    async def shutdown(self, drain_timeout: float) -> None:
        """Stop admitting, let admitted work finish within `drain_timeout`, stop workers."""
        ...


#: name -> "module:Class"; adding a pattern is one module plus one line here.
PATTERNS = Registry(
    "--pattern",
    "pattern",
    {
        "naive": "carebench.patterns.naive:NaivePattern",
        "workerpool": "carebench.patterns.workerpool:WorkerPoolPattern",
        "optimized": "carebench.patterns.optimized:OptimizedPattern",
        "semaphore": "carebench.patterns.semaphore:SemaphorePattern",
        "ratelimit": "carebench.patterns.ratelimit:RateLimitPattern",
        "adaptive": "carebench.patterns.adaptive:AdaptivePattern",
        "shedder": "carebench.patterns.shedder:ShedderPattern",
        "codel": "carebench.patterns.codel:CoDelPattern",
    },
)


def pattern_names() -> list[str]:
    return PATTERNS.names()


def check_pattern_name(name: str) -> str:
    return PATTERNS.check(name)


def pattern_class(name: str) -> type[Any]:
    """The class registered as `name`, importing its module only now."""
    cls: type[Any] = PATTERNS.load(name)
    return cls


def create_pattern(
    name: str, backend: Backend, config: PatternConfig, loop_clock: LoopClock | None = None
) -> Pattern:
    """Instantiate the pattern registered as `name`.

    `loop_clock` (default: the running loop's) lets tests drive the token refill and round-trip
    times by hand; deadlines stay on the real `loop.time()`, which it does not move.
    """
    pattern: Pattern = pattern_class(name)(backend, config, loop_clock or RunningLoopClock())
    return pattern


def check_admissible(
    query: Query, closing: bool, loop: asyncio.AbstractEventLoop | None = None
) -> None:
    """Refuse work while shutting down (503) or whose deadline already passed (504).

    `loop` (default: the running one) is for callers that keep it: looking it up costs a
    getpid() system call on CPython 3.11.
    """
    if closing:
        raise Rejected("server is shutting down")
    check_deadline(query, loop)


def check_deadline(query: Query, loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Refuse work whose deadline (loop time) has passed, before it reaches a queue or backend."""
    if query.deadline <= (loop or asyncio.get_running_loop()).time():
        raise DeadlineExceeded("deadline exceeded before the request was admitted")


async def await_until(
    future: asyncio.Future[T], deadline: float, loop: asyncio.AbstractEventLoop | None = None
) -> T:
    """Await `future`, failing it with `DeadlineExceeded` at `deadline` (loop time).

    A timer on the future, cheaper than `asyncio.timeout` (no task cancellation): for
    waiting on work another task does, which sees the failed future and skips it.

    A failure is raised out of `future`, which keeps it, and its traceback keeps the frames it
    passed: a frame still holding the future closes a reference cycle (future, exception,
    traceback, frame) that only the cyclic collector frees, with the request it holds
    (frames, query, the server's per-request objects). A server runs that collector rarely
    (server/gc_tuning.py), so a refusal per millisecond kept ~10 MiB alive (codel's queue
    sheds). So this frame, and every caller's that holds the future, drops it on the way out.
    """
    timer = (loop or asyncio.get_running_loop()).call_at(deadline, _expire, future)
    try:
        return await future
    finally:
        timer.cancel()
        del future, timer


def _expire(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_exception(DeadlineExceeded("deadline exceeded while queued"))


def query_backend(
    backend: Backend, query: Query, loop: asyncio.AbstractEventLoop | None = None
) -> Coroutine[Any, Any, Answer]:
    """The backend's answer to `query`, cut off at its deadline (to await).

    A plain function handing back `within_deadline`'s coroutine: one coroutine frame less
    on every query (~0.2 us)."""
    return within_deadline(backend_call(backend, query), query.deadline, loop)


def backend_call(backend: Backend, query: Query) -> Coroutine[Any, Any, Answer]:
    """The backend query that answers `query`, by its lookup: one call whatever it asks."""
    lookup = query.lookup
    if lookup == READ:
        return backend.get_patient(query.patient_id, query.deadline)
    if lookup == SEARCH:
        return backend.get_patients(query.patient_ids, query.deadline)
    return backend.get_clinical_record(query.patient_id, query.deadline)


async def within_deadline(
    awaitable: Awaitable[T], deadline: float, loop: asyncio.AbstractEventLoop | None = None
) -> T:
    """Await `awaitable`, cancelling it and raising `DeadlineExceeded` at `deadline` (loop time).

    The semantics of `asyncio.timeout_at` (a cancellation of the awaiting task that is turned
    back into an error, and an outside cancellation that stays one) at ~1/3 of its cost: one
    timer and a two-slot object instead of a context manager, a task lookup and rescheduling.
    """
    loop = loop or asyncio.get_running_loop()
    task = asyncio.current_task(loop)
    if task is None:
        raise RuntimeError("within_deadline() must be awaited from a task")
    expiry = _Expiry(task)
    cancelling = task.cancelling()
    timer = loop.call_at(deadline, expiry.expire)
    try:
        result = await awaitable
    except asyncio.CancelledError:
        if expiry.expired and task.uncancel() <= cancelling:
            raise DeadlineExceeded("deadline exceeded") from None
        raise
    finally:
        timer.cancel()
        del awaitable  # a task keeps its failure: the cycle await_until describes
    if expiry.expired:  # the awaitable swallowed our cancellation and finished anyway
        task.uncancel()
    return result


class _Expiry:
    """Cancels the task awaiting a deadline and remembers that it did."""

    __slots__ = ("expired", "task")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.expired = False

    def expire(self) -> None:
        self.expired = True
        self.task.cancel()
