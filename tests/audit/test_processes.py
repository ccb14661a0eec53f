"""One `--audit-log` for `serve --processes 2`, a file or a standard output that is a pipe: both
processes write to it at once under concurrent load, and it holds exactly one whole,
well-formed line per request."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from carebench.server.process import ServerProcess

pytestmark = pytest.mark.slow

#: Connections driven at once, each by a client of its own (the kernel spreads connections
#: over the processes by hash), and requests on each per round.
CONNECTIONS = 32
PER_CONNECTION = 60
FAST = ["--db-profile", "ideal", "--min-latency", "0", "--max-latency", "0", "--quiet"]


async def drive_connection(url: str, ids: list[str]) -> None:
    """Each of `ids` as a request on one keep-alive connection, one after the other."""
    limits = httpx.Limits(max_connections=1)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
        for n, request_id in enumerate(ids):
            headers = {"X-Request-ID": request_id}
            response = await client.get(f"/fhir/Patient/P{n:05d}", headers=headers)
            assert response.status_code == 200, response.text


async def served_by_each(url: str) -> list[int]:
    """Requests each process has served (from /metrics, on a fresh connection)."""
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        document = (await client.get("/metrics")).json()
    return [entry["total_requests"] for entry in document["processes"]]


async def drive_until_both_serve(url: str, rounds: int = 4) -> list[str]:
    """Rounds of CONNECTIONS concurrent connections until both processes have served some
    (32 connections all hashed to one process is unlikely, not impossible); the ids sent."""
    sent: list[str] = []
    for round_number in range(rounds):
        batches = [
            [f"r{round_number}-c{connection}-{n}" for n in range(PER_CONNECTION)]
            for connection in range(CONNECTIONS)
        ]
        await asyncio.gather(*(drive_connection(url, ids) for ids in batches))
        sent += [request_id for ids in batches for request_id in ids]
        served = await served_by_each(url)
        if len(served) == 2 and all(served):
            return sent
    raise AssertionError(f"one process served none of {len(sent)} requests: {served}")


def request_id_of(record: dict[str, Any]) -> str:
    """The request id of a JSON record or a FHIR AuditEvent."""
    if record.get("resourceType") == "AuditEvent":
        value: str = record["entity"][-1]["what"]["identifier"]["value"]
        return value
    request_id: str = record["request_id"]
    return request_id


def lines_written(sink: str, log: Path, server: ServerProcess) -> list[str]:
    """The lines the processes wrote: the file's, or the audit lines of their standard
    output (shared with the server's own lines, each written whole by one call)."""
    if sink == "file":
        text = log.read_text()
        assert text.endswith("\n")
        return text.split("\n")[:-1]
    # A torn line would show as a fragment without the record's start, or a line with two.
    return [line for line in server.output if "request_id" in line or "AuditEvent" in line]


@pytest.mark.parametrize("audit_format", ["json", "fhir"])
@pytest.mark.parametrize("sink", ["file", "stdout"])
async def test_two_processes_write_whole_lines_to_one_sink(
    sink: str, audit_format: str, tmp_path: Path
) -> None:
    """Both processes write their batches to one file (O_APPEND), or to one standard output
    that is a pipe, at once: after shutdown there is one well-formed JSON line per request id
    sent, none missing, doubled, torn or interleaved."""
    log = tmp_path / "audit.jsonl"
    args = ["--processes", "2", "--error-rate", "0", *FAST]
    args += ["--audit-log", str(log) if sink == "file" else "-", "--audit-format", audit_format]
    server = ServerProcess(args)
    server.start()
    try:
        sent = await drive_until_both_serve(server.url)
    finally:
        status = server.stop()
    assert status == 0, server.output[-20:]
    records = [json.loads(line) for line in lines_written(sink, log, server)]
    assert all(isinstance(record, dict) for record in records)
    ids = [request_id_of(record) for record in records]
    assert len(ids) == len(sent) == len(set(ids))
    assert set(ids) == set(sent)
