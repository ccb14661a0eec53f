"""Sinks the tests control, and an app with an audit trail behind httpx's ASGI transport."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import httpx
import msgspec
import pytest

from carebench.audit.record import ENCODERS
from carebench.audit.trail import AuditTrail
from carebench.auth.gate import AccessGate
from carebench.patterns.base import PatternConfig, create_pattern
from carebench.server.app import CareBenchApp
from tests.contract import ConformanceHook
from tests.fakes import GatedBackend


class MemorySink:
    """Keeps every line; `hold` (when set) blocks writes until released; `fail` raises."""

    name = "memory"

    def __init__(self) -> None:
        self.data = bytearray()
        self.writes = 0
        self.closed = False
        self.fail: OSError | None = None
        self.hold: threading.Event | None = None
        self.entered = threading.Event()

    def write(self, data: bytes) -> None:
        self.entered.set()
        if self.hold is not None:
            self.hold.wait(10)
        if self.fail is not None:
            raise self.fail
        self.writes += 1
        self.data += data

    def close(self) -> None:
        self.closed = True

    def lines(self) -> list[dict[str, Any]]:
        return [msgspec.json.decode(line) for line in bytes(self.data).splitlines()]


def trail_for(sink: MemorySink, capacity: int = 100, fmt: str = "json") -> AuditTrail:
    return AuditTrail(sink, ENCODERS[fmt], capacity, fmt)


Built = tuple[CareBenchApp, GatedBackend, httpx.AsyncClient]
AuditedApp = Callable[..., Coroutine[Any, Any, Built]]


@pytest.fixture
async def audited_app() -> AsyncIterator[AuditedApp]:
    """(app, backend, client) with `trail` (and `gate`, if any); every response is checked
    against the document the app serves."""
    built: list[tuple[CareBenchApp, httpx.AsyncClient]] = []

    async def factory(
        trail: AuditTrail, gate: AccessGate | None = None, workers: int = 2, queue_size: int = 4
    ) -> tuple[CareBenchApp, GatedBackend, httpx.AsyncClient]:
        backend = GatedBackend(open_gate=True)
        pattern = create_pattern("workerpool", backend, PatternConfig(workers, queue_size))
        app = CareBenchApp(pattern, backend, drain_timeout=1.0, gate=gate, audit=trail)
        await app.startup()
        document = msgspec.json.decode(app._openapi_body)
        http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=("10.0.0.7", 40000)),
            base_url="http://testserver",
            event_hooks={"response": [ConformanceHook(document)]},
        )
        built.append((app, http))
        return app, backend, http

    yield factory
    for app, http in built:
        await http.aclose()
        if app.started:
            await app.shutdown()
