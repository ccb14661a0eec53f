"""The process section of /metrics: memory, GC and the event loop's tasks."""

from __future__ import annotations

import asyncio

import msgspec

from carebench.metrics.process import ProcessStats, process_stats


async def test_counts_the_running_loops_unfinished_tasks() -> None:
    """asyncio_tasks counts the tasks not yet done, this test's own included."""
    before = process_stats()["asyncio_tasks"]
    release = asyncio.Event()
    waiting = [asyncio.create_task(release.wait()) for _ in range(3)]
    await asyncio.sleep(0)
    assert process_stats()["asyncio_tasks"] == before + 3 >= 4
    release.set()
    await asyncio.gather(*waiting)
    assert process_stats()["asyncio_tasks"] == before


def test_has_the_shape_of_process_stats_outside_a_loop() -> None:
    """Outside a running loop there are no tasks to count, and the shape still holds."""
    stats = process_stats()
    assert stats["asyncio_tasks"] == 0
    assert stats["rss_bytes"] > 0
    assert msgspec.convert(stats, ProcessStats) == stats
