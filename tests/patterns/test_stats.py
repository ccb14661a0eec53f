"""Every pattern's stats() has the shape /metrics promises (PatternStats), also through JSON."""

from __future__ import annotations

import asyncio

import msgspec

from carebench.patterns.base import Pattern
from carebench.patterns.stats import PatternStats
from tests.fakes import GatedBackend
from tests.patterns.conftest import query


async def test_stats_match_pattern_stats_after_traffic(
    pattern: Pattern, backend: GatedBackend
) -> None:
    """After answering requests, stats() survives a JSON round trip checked as PatternStats."""
    backend.release()
    await asyncio.gather(*(pattern.submit(query(f"P{i}")) for i in range(3)))
    stats = pattern.stats()
    decoded = msgspec.json.decode(msgspec.json.encode(stats), type=PatternStats)
    assert decoded == stats
    assert decoded["name"] == pattern.name
    assert decoded["in_flight"] == 0


async def test_stats_while_busy_count_what_is_in_flight(
    pattern: Pattern, backend: GatedBackend
) -> None:
    """While the backend holds a request, the stats show it in flight (and still match)."""
    waiting = asyncio.ensure_future(pattern.submit(query("P1")))
    await backend.wait_active(1)
    stats = msgspec.convert(pattern.stats(), PatternStats)
    assert stats["in_flight"] == 1
    backend.release()
    await waiting
