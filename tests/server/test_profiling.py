"""GET /debug/profile: off by default, loopback only, a real profile of the live server."""

from __future__ import annotations

import asyncio
import json

import httpx

from carebench.patterns.base import PatternConfig, create_pattern
from carebench.server.app import CareBenchApp
from tests.contract import ConformanceHook, document_for
from tests.fakes import GatedBackend


def app(enable_profiling: bool) -> CareBenchApp:
    backend = GatedBackend(open_gate=True)
    pattern = create_pattern("naive", backend, PatternConfig())
    return CareBenchApp(pattern, backend, enable_profiling=enable_profiling)


def client(asgi: CareBenchApp, host: str = "127.0.0.1") -> httpx.AsyncClient:
    """A client whose every response must conform to the app's OpenAPI document."""
    transport = httpx.ASGITransport(app=asgi, client=(host, 5000))
    conforms = ConformanceHook(document_for(asgi._routes))
    return httpx.AsyncClient(
        transport=transport, base_url="http://testserver", event_hooks={"response": [conforms]}
    )


async def test_profiling_is_off_by_default() -> None:
    """Without --enable-profiling the route does not exist."""
    async with client(app(False)) as http:
        assert (await http.get("/debug/profile?seconds=0.01")).status_code == 404


async def test_loopback_client_gets_an_html_profile() -> None:
    """A loopback client gets pyinstrument's HTML profile of the requested interval."""
    async with client(app(True)) as http:
        response = await http.get("/debug/profile?seconds=0.05")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "pyinstrument" in response.text.lower()


async def test_speedscope_format_is_json() -> None:
    """?format=speedscope returns a speedscope document."""
    async with client(app(True)) as http:
        response = await http.get("/debug/profile?seconds=0.05&format=speedscope")
    assert response.status_code == 200
    assert "speedscope" in json.loads(response.text)["$schema"]


async def test_remote_clients_are_refused() -> None:
    """A non-loopback client gets 403 even with profiling enabled."""
    async with client(app(True), host="10.1.2.3") as http:
        response = await http.get("/debug/profile?seconds=0.05")
    assert response.status_code == 403
    assert response.json()["success"] is False


async def test_bad_arguments_are_400() -> None:
    """seconds outside (0, 60], non-numeric seconds and unknown formats are 400s."""
    async with client(app(True)) as http:
        for query in (
            "seconds=0",
            "seconds=61",
            "seconds=abc",
            "seconds=",
            "seconds=1&format=pprof",
        ):
            assert (await http.get(f"/debug/profile?{query}")).status_code == 400, query


async def test_one_profile_at_a_time() -> None:
    """A profile requested while one is being taken gets 409."""
    async with client(app(True)) as http:
        first = asyncio.create_task(http.get("/debug/profile?seconds=0.2"))
        for _ in range(100):
            await asyncio.sleep(0.01)
            second = await http.get("/debug/profile?seconds=0.01")
            if second.status_code == 409:
                break
        assert (await first).status_code == 200
    assert second.status_code == 409
