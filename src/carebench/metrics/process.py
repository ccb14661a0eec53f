"""Process state for /metrics: resident memory, garbage-collector activity and tasks."""

from __future__ import annotations

import asyncio
import gc
import os
import resource
from typing import TypedDict

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class ProcessStats(TypedDict):
    rss_bytes: int
    peak_rss_bytes: int
    #: Collections so far in each of the garbage collector's generations.
    gc_collections: list[int]
    #: asyncio tasks not yet done on the event loop that answered (0 outside a running loop):
    #: flat under steady load, so a task leaked per request shows as growth.
    asyncio_tasks: int


def rss_bytes() -> int:
    """Current resident set size (peak RSS where /proc is unavailable)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE_SIZE
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def asyncio_tasks() -> int:
    """Tasks not yet done on the running event loop; 0 when no loop is running."""
    try:
        return len(asyncio.all_tasks())
    except RuntimeError:
        return 0


def process_stats() -> ProcessStats:
    """RSS, peak RSS, GC collections per generation and the event loop's tasks."""
    return {
        "rss_bytes": rss_bytes(),
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "gc_collections": [generation["collections"] for generation in gc.get_stats()],
        "asyncio_tasks": asyncio_tasks(),
    }
