"""An app per pattern behind httpx's in-process ASGI transport.

Every response a test receives through `make_app`'s client is checked against the app's own
OpenAPI document (tests/contract.py), so each status these tests provoke, for every pattern,
is also a contract test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import httpx
import pytest

from carebench.loop_clock import ManualLoopClock
from carebench.patterns.base import PatternConfig, create_pattern, pattern_names
from carebench.server.app import CareBenchApp
from tests.contract import ConformanceHook, document_for
from tests.fakes import GatedBackend

AppFactory = Callable[..., Coroutine[Any, Any, tuple[CareBenchApp, httpx.AsyncClient]]]


@pytest.fixture(params=pattern_names())
async def make_app(request: pytest.FixtureRequest) -> AsyncIterator[AppFactory]:
    """Builds (app, client) for the parametrised pattern; shuts everything down afterwards."""
    built: list[tuple[CareBenchApp, httpx.AsyncClient]] = []

    async def factory(
        backend: Any = None, workers: int = 2, queue_size: int = 2, request_timeout: float = 5.0
    ) -> tuple[CareBenchApp, httpx.AsyncClient]:
        backend = backend or GatedBackend(open_gate=True)
        config = PatternConfig(
            workers, queue_size, limit=workers + queue_size, burst=workers + queue_size
        )
        pattern = create_pattern(request.param, backend, config, ManualLoopClock())
        app = CareBenchApp(pattern, backend, request_timeout=request_timeout, drain_timeout=1.0)
        await app.startup()
        transport = httpx.ASGITransport(app=app)
        conforms = ConformanceHook(document_for(app._routes))
        client = httpx.AsyncClient(
            transport=transport,
            base_url="http://testserver",
            event_hooks={"response": [conforms]},
        )
        built.append((app, client))
        return app, client

    yield factory
    for app, client in built:
        await client.aclose()
        await app.shutdown()
