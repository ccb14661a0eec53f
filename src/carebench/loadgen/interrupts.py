"""Ctrl-C and SIGTERM during a load test: the first stops sending (the run ends with what it
measured), a second ends it at once; signals outside the run wait for its event loop to close."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Awaitable, Iterator
from types import FrameType
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class Stoppable(Protocol):
    """What Ctrl-C stops: an engine, or the generator processes of a run."""

    stopping: bool


@contextlib.contextmanager
def stop_on_interrupt(engine: Stoppable) -> Any:
    """Ctrl-C or SIGTERM stops sending; the run ends with what it measured. A second one
    ends it at once (KeyboardInterrupt: the runs before it are kept, this one is not)."""
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)

    def stop() -> None:
        if engine.stopping:
            raise KeyboardInterrupt
        engine.stopping = True

    previous = {sig: signal.getsignal(sig) for sig in signals}
    try:
        for sig in signals:
            loop.add_signal_handler(sig, stop)
    except (NotImplementedError, RuntimeError):
        yield
        return
    try:
        yield
    finally:
        for sig, handler in previous.items():
            loop.remove_signal_handler(sig)
            if handler is not None:
                # remove_signal_handler leaves SIGTERM at SIG_DFL: put back the CLI's handler.
                signal.signal(sig, handler)


def run_async(coroutine: Awaitable[T]) -> T:
    import uvloop

    async def main() -> T:
        return await coroutine

    with _interrupts_after_the_loop():
        return uvloop.run(main())


@contextlib.contextmanager
def _interrupts_after_the_loop() -> Iterator[None]:
    """Ctrl-C or SIGTERM outside the run's own handlers (as the loop starts or winds down)
    interrupts once the loop has closed: a KeyboardInterrupt in the middle of its teardown
    left uvloop's executor-shutdown thread printing a traceback."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach the main thread only
        return
    received: list[int] = []

    def defer(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.getsignal(sig) for sig in signals}
    for sig in signals:
        signal.signal(sig, defer)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            if handler is not None:
                signal.signal(sig, handler)
    if received:
        raise KeyboardInterrupt
