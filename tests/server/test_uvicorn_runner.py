"""A server process of `serve --processes` on uvicorn: signals that come while it starts."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from types import FrameType

import pytest

from carebench.server.uvicorn_runner import stop_on_early_signals


class StartingServer:
    """What stop_on_early_signals touches of a DrainingServer: should_exit, handle_exit."""

    def __init__(self) -> None:
        self.should_exit = False
        self.exits: list[int] = []

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.exits.append(sig)
        self.should_exit = True


@pytest.fixture
def restore_handlers() -> Iterator[None]:
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in previous.items():
        signal.signal(sig, handler)


@pytest.mark.usefixtures("restore_handlers")
def test_a_signal_before_uvicorn_s_handlers_stops_the_server_once() -> None:
    """SIGTERM while the child starts makes the server exit when it has started (not lost);
    the signal uvicorn re-raises after draining, and any later one, do nothing."""
    server = StartingServer()
    stop_on_early_signals(server)  # type: ignore[arg-type]
    signal.raise_signal(signal.SIGTERM)
    assert server.exits == [signal.SIGTERM] and server.should_exit
    signal.raise_signal(signal.SIGTERM)
    signal.raise_signal(signal.SIGINT)
    assert server.exits == [signal.SIGTERM]
