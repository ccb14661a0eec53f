"""Processes of one group answering /metrics for all: their peer sockets, in one test process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from carebench.loop_clock import ManualLoopClock
from carebench.patterns.base import PatternConfig, create_pattern, pattern_names
from carebench.server import peers
from carebench.server.app import CareBenchApp
from carebench.server.peers import ProcessGroup
from carebench.server.restarts import write_restarts
from tests.contract import ConformanceHook, document_for
from tests.fakes import GatedBackend


def make_app(pattern: str = "workerpool") -> CareBenchApp:
    backend = GatedBackend(open_gate=True)
    config = PatternConfig(2, 2, limit=4, burst=4)
    return CareBenchApp(create_pattern(pattern, backend, config, ManualLoopClock()), backend)


@pytest.fixture(params=["workerpool"])
async def group(
    tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[list[ProcessGroup]]:
    """Two started processes' parts (pids 101 and 102) meeting in one directory."""
    members = []
    for pid in (101, 102):
        member = ProcessGroup(tmp_path, make_app(request.param), pid=pid)
        member.attach()
        await member.app.startup()  # opens the peer socket through on_startup
        members.append(member)
    yield members
    for member in members:
        await member.close()
        await member.app.shutdown()


async def get(app: CareBenchApp, path: str) -> httpx.Response:
    """GET through the app, checked against its OpenAPI document (the group's /metrics too)."""
    transport = httpx.ASGITransport(app=app)
    conforms = ConformanceHook(document_for(app._routes))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://testserver", event_hooks={"response": [conforms]}
    ) as client:
        return await client.get(path)


@pytest.mark.parametrize("group", pattern_names(), indirect=True)
async def test_either_process_answers_the_totals(group: list[ProcessGroup]) -> None:
    """Requests served by each process are counted in the /metrics of both, for every
    pattern, in a document that conforms to the app's OpenAPI schema."""
    first, second = group
    for index in range(3):
        assert (await get(first.app, f"/api/v1/patients?id=P{index}")).status_code == 200
    assert (await get(second.app, "/api/v1/patients?id=P9")).status_code == 200
    for member in group:
        document = (await get(member.app, "/metrics")).json()
        assert document["total_requests"] == 4
        counts = {entry["pid"]: entry["total_requests"] for entry in document["processes"]}
        assert counts == {101: 3, 102: 1}
        text = (await get(member.app, "/metrics?format=prometheus")).text
        name = first.app.pattern.name
        assert f'carebench_requests_total{{outcome="success",pattern="{name}"}} 4.0' in text


async def test_an_unknown_format_is_a_400(group: list[ProcessGroup]) -> None:
    """The group's /metrics refuses formats as a single process does."""
    response = await get(group[0].app, "/metrics?format=xml")
    assert response.status_code == 400
    assert "unknown format 'xml'" in response.json()["error"]


async def test_a_stale_socket_is_reported_unreachable(
    group: list[ProcessGroup], tmp_path: Path
) -> None:
    """A socket file nobody listens on (a process that died) is named, not counted."""
    (tmp_path / "103.sock").touch()
    document = (await get(group[0].app, "/metrics")).json()
    assert document["unreachable_processes"] == [103]
    assert document["process_count"] == 2


async def test_a_stuck_peer_does_not_stall_the_scrape(
    group: list[ProcessGroup], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A peer that accepts but never answers is unreachable after PEER_TIMEOUT."""
    monkeypatch.setattr(peers, "PEER_TIMEOUT", 0.05)
    stuck = asyncio.Event()

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await stuck.wait()
        writer.close()

    server = await asyncio.start_unix_server(never_answer, path=str(tmp_path / "104.sock"))
    try:
        totals = await group[0].totals()
    finally:
        stuck.set()
        server.close()
        await server.wait_closed()
    assert totals.unreachable == [104]
    assert len(totals.states) == 2


async def test_a_closed_process_leaves_the_group(group: list[ProcessGroup]) -> None:
    """After close() its socket is gone and the others count only themselves."""
    first, second = group
    await second.close()
    assert not second.path.exists()
    totals = await first.totals()
    assert [state["pid"] for state in totals.states] == [101]
    assert totals.unreachable == []


async def test_the_parent_s_restart_count_is_in_both_views(
    group: list[ProcessGroup], tmp_path: Path
) -> None:
    """processes_restarted (JSON) and carebench_process_restarts_total (Prometheus) read the
    count the parent keeps in the directory; 0 before any restart."""
    assert (await get(group[0].app, "/metrics")).json()["processes_restarted"] == 0
    write_restarts(tmp_path, 3)
    for member in group:
        assert (await get(member.app, "/metrics")).json()["processes_restarted"] == 3
        text = (await get(member.app, "/metrics?format=prometheus")).text
        assert "carebench_process_restarts_total 3.0" in text
