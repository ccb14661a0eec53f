"""Where audit lines go: a file (appended to, created owner-only) or standard output.

A sink is written to from the audit writer thread only, never from the event loop; a write
that fails raises OSError and the trail stops accepting requests (see trail.py).
"""

from __future__ import annotations

import os
from typing import Protocol

STDOUT = "-"


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
    """An open file descriptor, written with os.write until every byte is out."""

    def __init__(self, fd: int, name: str, owned: bool) -> None:
        self._fd = fd
        self._name = name
        self._owned = owned

    @property
    def name(self) -> str:
        return self._name

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]

    def close(self) -> None:
        if self._owned:
            os.close(self._fd)


def open_sink(target: str) -> FdSink:
    """`-` for standard output, else a file opened for appending (created with mode 0600:
    the log names patients by id and who read them). OSError when it cannot be opened."""
    if target == STDOUT:
        return FdSink(1, "stdout", owned=False)
    fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    return FdSink(fd, target, owned=True)
