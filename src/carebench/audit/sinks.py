"""Where audit lines go: a file (appended to, created owner-only) or standard output.

A sink is written to from the audit writer thread only, never from the event loop; a write
that fails raises OSError and the trail stops accepting requests (see trail.py).

Several writers may share the sink: the processes of `serve --processes N` append to one
file, or write to one standard output. A line must never be torn or interleaved with another
writer's. On a regular file opened with O_APPEND, one write() lands whole at the end of the
file (the kernel holds the file's lock for the write), so a batch is one write. On a pipe or
socket only writes of at most PIPE_BUF bytes are whole, so there a batch is written in chunks
of whole lines of at most PIPE_BUF (whole batches from two processes, the FHIR records of
1,920 requests, came out of one pipe with 16 torn lines, measured). A line longer than PIPE_BUF
(a FHIR search of a dozen ids) cannot be written atomically there, so each batch is written
under an exclusive POSIX record lock (lockf) on the sink: the other carebench processes wait
for it instead of landing in the middle of the line. A record lock belongs to the process,
not to the open file, so it excludes processes that inherited one standard output (the same
open file, where flock would not); the kernel drops it if the process dies. Only writers that
take the lock are kept out: what a server prints to the same standard output itself (its
final stats, at shutdown) does not take it, and could land inside an audit line longer than
PIPE_BUF written at that moment.
"""

from __future__ import annotations

import fcntl
import os
import select
import stat
from collections.abc import Iterator
from typing import Protocol

STDOUT = "-"
#: The most bytes a pipe takes in one write without interleaving another writer's.
ATOMIC_PIPE_WRITE = select.PIPE_BUF


class AuditSink(Protocol):
    """Takes whole batches of encoded lines."""

    @property
    def name(self) -> str:
        """Where the lines go, for messages and /metrics."""
        ...

    def write(self, data: bytes) -> None:
        """Write all of `data` (blocking is fine: a thread calls it); OSError on failure."""
        ...

    def close(self) -> None: ...


class FdSink:
    """An open file descriptor, written with os.write until every byte is out; when `chunk`
    is set (a pipe or socket), in chunks of whole lines of at most `chunk` bytes, each batch
    under the sink's exclusive record lock."""

    def __init__(self, fd: int, name: str, owned: bool, chunk: int | None = None) -> None:
        self._fd = fd
        self._name = name
        self._owned = owned
        self.chunk = chunk

    @property
    def name(self) -> str:
        return self._name

    def write(self, data: bytes) -> None:
        if self.chunk is None:
            self._write_all(memoryview(data))
            return
        fcntl.lockf(self._fd, fcntl.LOCK_EX)
        try:
            for part in line_chunks(data, self.chunk):
                self._write_all(part)
        finally:
            fcntl.lockf(self._fd, fcntl.LOCK_UN)

    def _write_all(self, view: memoryview) -> None:
        while view:
            written = os.write(self._fd, view)
            view = view[written:]

    def close(self) -> None:
        if self._owned:
            os.close(self._fd)


def line_chunks(data: bytes, limit: int) -> Iterator[memoryview]:
    """`data` in consecutive pieces that end at a line end and hold at most `limit` bytes;
    a line longer than `limit` is a piece of its own."""
    view = memoryview(data)
    start = 0
    while start < len(data):
        end = len(data)
        if end - start > limit:
            end = data.rfind(b"\n", start, start + limit) + 1
            if end <= start:  # one line longer than the limit: whole, as it cannot be split
                end = data.find(b"\n", start + limit) + 1 or len(data)
        yield view[start:end]
        start = end


def _chunk_for(fd: int) -> int | None:
    """None (whole batches) for a regular file, else the pipe's atomic write size."""
    return None if stat.S_ISREG(os.fstat(fd).st_mode) else ATOMIC_PIPE_WRITE


def open_sink(target: str) -> FdSink:
    """`-` for standard output, else a file opened for appending (created with mode 0600:
    the log names patients by id and who read them). OSError when it cannot be opened."""
    if target == STDOUT:
        return FdSink(1, "stdout", owned=False, chunk=_chunk_for(1))
    fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    return FdSink(fd, target, owned=True, chunk=_chunk_for(fd))
