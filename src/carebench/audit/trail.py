"""The audit trail: records handed over by the event loop, written by one thread.

No access goes unrecorded: a request reserves its record's place before it is served
(`reserve()`), and is refused when the place cannot be had: too many records waiting or in
flight (the sink cannot keep up) or a sink that failed. Every reservation ends in `commit()`.
The event loop only appends to a deque and, when the writer sleeps, wakes it; encoding and
writing happen on the writer thread, in batches. Woken, the writer lingers a few milliseconds
before it drains, so that under load it wakes ~100 times a second, not once per request (a
wake-up per request halved the server's rate at zero database latency, measured).

Counters have one writer each (the loop: reserved, refused; the writer: written, lost), so
no lock is needed: under the GIL each sees the other's as a plain read.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Literal, TypedDict

from carebench.audit.record import AuditRecord
from carebench.audit.sinks import AuditSink

log = logging.getLogger("carebench.audit")

#: Records written to the sink in one call at most.
BATCH = 512
#: How long the writer sleeps without being woken before looking again, seconds.
IDLE_WAIT = 0.5
#: How long the writer waits after a wake-up for more records to batch, seconds.
LINGER = 0.01
AuditState = Literal["ok", "failed", "closed"]


class AuditStats(TypedDict):
    """The trail in /metrics: records written, requests refused for want of a record, records
    lost (answered, then the sink failed), what waits, and whether the sink works."""

    state: AuditState
    sink: str
    format: str
    written: int
    refused: int
    lost: int
    pending: int
    capacity: int
    error: str | None


class AuditTrail:
    """Bounded hand-over from the event loop to a writer thread and `sink`."""

    def __init__(
        self,
        sink: AuditSink,
        encode: Callable[[AuditRecord], bytes],
        capacity: int,
        format_name: str = "json",
        linger: float = LINGER,
    ) -> None:
        self._sink = sink
        self._linger = linger
        self._encode = encode
        self.capacity = capacity
        self._format = format_name
        self._queue: deque[AuditRecord] = deque()
        self._wake = threading.Event()
        self._idle = False
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="carebench-audit", daemon=True)
        self.reserved = 0
        self.refused = 0
        self.written = 0
        self.lost = 0
        #: Why the sink failed (None while it works).
        self.error: str | None = None

    @property
    def state(self) -> AuditState:
        if self.error is not None:
            return "failed"
        return "closed" if self._closing else "ok"

    @property
    def pending(self) -> int:
        """Records reserved and not yet written (or lost): in flight plus waiting."""
        return self.reserved - self.written - self.lost

    def start(self) -> None:
        self._thread.start()

    def reserve(self) -> bool:
        """Take a record's place for a request about to be served; False (and counted) when
        the trail cannot take one: the request must be refused."""
        if self.error is not None or self._closing or self.pending >= self.capacity:
            self.refused += 1
            return False
        self.reserved += 1
        return True

    def commit(self, record: AuditRecord) -> None:
        """Hand over the record of a reserved request (never blocks)."""
        self._queue.append(record)
        if self._idle:
            self._idle = False
            self._wake.set()

    def stats(self) -> AuditStats:
        return {
            "state": self.state,
            "sink": self._sink.name,
            "format": self._format,
            "written": self.written,
            "refused": self.refused,
            "lost": self.lost,
            "pending": self.pending,
            "capacity": self.capacity,
            "error": self.error,
        }

    def close(self, timeout: float = 10.0) -> None:
        """Refuse new reservations, write every record handed over, stop the writer and close
        the sink. What could not be written shows in `lost` (a failed sink) or `pending` (a
        writer still stuck in the sink after `timeout` seconds)."""
        self._closing = True
        self._wake.set()
        if self._thread.ident is None:
            self._write_all()  # never started (the server failed to start): write from here
        else:
            self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("audit: %d records still unwritten after %gs", self.pending, timeout)
            return
        try:
            self._sink.close()
        except OSError as exc:
            self._fail(exc)

    def _run(self) -> None:
        while True:
            self._idle = True
            if not self._queue:
                if self._closing:
                    return
                self._wake.wait(IDLE_WAIT)
            self._wake.clear()
            self._idle = False
            if self._linger and not self._closing:
                time.sleep(self._linger)
            self._write_all()

    def _write_all(self) -> None:
        while self._queue:
            batch = [self._queue.popleft() for _ in range(min(BATCH, len(self._queue)))]
            if self.error is not None:
                self.lost += len(batch)
                continue
            try:
                self._sink.write(b"".join([self._encode(record) for record in batch]))
            except Exception as exc:  # a sink that fails in any way stops the service
                self._fail(exc)
                self.lost += len(batch)
            else:
                self.written += len(batch)

    def _fail(self, exc: Exception) -> None:
        if self.error is None:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            self.error = f"{type(exc).__name__}: {reason}"
            log.error("audit: writing to %s failed (%s); refusing requests", self._sink.name, exc)
