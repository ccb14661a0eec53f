"""The app's side of a drain: one timeout for the whole drain, and an answer for the
requests the server cancels once it is cut (tests/reliability/test_shutdown.py drives it
through real servers)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from carebench.server.app import CareBenchApp
from tests.fakes import GatedBackend
from tests.server.conftest import AppFactory

SCOPE = {
    "type": "http",
    "method": "GET",
    "path": "/api/v1/patients",
    "query_string": b"id=P00042",
    "headers": [],
}


async def _held_request(app: CareBenchApp, backend: GatedBackend) -> tuple[Any, list[Any]]:
    """A patient request held inside the backend: its task and the messages it sent."""
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> Any:
        await asyncio.Event().wait()  # the client never leaves

    task = asyncio.create_task(app(dict(SCOPE), receive, send))
    await backend.wait_active(1)
    return task, sent


async def test_a_request_cancelled_after_the_cut_is_answered_503(make_app: AppFactory) -> None:
    """Cancelled once the drain is cut, a running request is answered 503 with Retry-After
    and counted as rejected, for every pattern."""
    backend = GatedBackend()
    app, _ = await make_app(backend=backend)
    task, sent = await _held_request(app, backend)
    app.cut_drain()
    task.cancel()
    await task
    start, body = sent
    assert start["status"] == 503
    assert (b"retry-after", b"1") in start["headers"]
    assert b"server shutting down" in body["body"]
    assert app.metrics.count("rejected") == 1
    assert app.drain_left() == 0.0


async def test_a_request_cancelled_before_the_cut_stays_cancelled(make_app: AppFactory) -> None:
    """Cancellation for any other reason is not turned into an answer."""
    backend = GatedBackend()
    app, _ = await make_app(backend=backend)
    task, sent = await _held_request(app, backend)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sent == []
    assert app.metrics.total == 0


async def test_the_drain_timeout_runs_once_from_the_first_signal(make_app: AppFactory) -> None:
    """begin_drain starts the clock once; what is left shrinks and never grows back."""
    app, _ = await make_app()
    assert app.drain_left() == app.drain_timeout
    app.begin_drain()
    first = app.drain_left()
    assert 0.0 < first <= app.drain_timeout
    await asyncio.sleep(0.01)
    app.begin_drain()  # a second signal does not restart it
    assert app.drain_left() < first
