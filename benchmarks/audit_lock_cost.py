"""What the record lock around each batch written to a pipe costs the audit writer, per record.

`--audit-log -` on a pipe (or a FIFO given as the log) writes each batch in whole-line
chunks of at most PIPE_BUF under an exclusive lockf lock (audit/sinks.py), so a line longer
than PIPE_BUF is never interleaved with another process's. This times FdSink.write with the
lock against the same chunked writes without it (the sink before the lock), for FHIR
AuditEvent lines of a read (1 id, ~1.4 KB) and of a search of 20 ids (~6.1 KB, longer than
PIPE_BUF), in batches of 1, 32 and 512 records (512: the trail's largest batch). The sink is
a pipe that a thread drains, one writer process, so the lock is never contended: what is
measured is its two system calls per batch, not waiting for another writer. Several runs of
calibrated loops; median and spread (min-max) in microseconds per record.

    /tmp/cbtools/quiet taskset -c 1 .venv/bin/python benchmarks/audit_lock_cost.py
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable

from carebench.audit.record import AuditRecord, encode_fhir
from carebench.audit.sinks import ATOMIC_PIPE_WRITE, FdSink, line_chunks

RUNS = 7
#: Records written per timed loop (whole batches).
RECORDS_PER_LOOP = 20_480
BATCHES = (1, 32, 512)


def fhir_line(ids: int) -> bytes:
    record = AuditRecord(
        time=1.7e9,
        request_id="b3c1f0e2a9d84c7b9a1e5f3d2c4b6a80",
        subject="clinician-42",
        client_id="ehr-app",
        client_address="127.0.0.1",
        action="search" if ids > 1 else "read",
        resource_ids=tuple(f"P{n:05d}" for n in range(ids)),
        status=200,
        purpose_of_use="TREAT",
        latency=0.012,
    )
    return encode_fhir(record)


def unlocked(sink: FdSink) -> Callable[[bytes], None]:
    """The sink's write before the lock: the same chunks, no lock."""

    def write(data: bytes) -> None:
        for part in line_chunks(data, ATOMIC_PIPE_WRITE):
            sink._write_all(part)

    return write


def per_record(write: Callable[[bytes], None], batch: bytes, records: int) -> float:
    """Microseconds per record over one loop of RECORDS_PER_LOOP records."""
    loops = RECORDS_PER_LOOP // records
    start = time.perf_counter()
    for _ in range(loops):
        write(batch)
    return (time.perf_counter() - start) / (loops * records) * 1e6


def drain(fd: int) -> None:
    while os.read(fd, 1 << 16):
        pass


def main() -> None:
    read_end, write_end = os.pipe()
    reader = threading.Thread(target=drain, args=(read_end,), daemon=True)
    reader.start()
    sink = FdSink(write_end, "pipe", owned=False, chunk=ATOMIC_PIPE_WRITE)
    variants = {"locked": sink.write, "unlocked": unlocked(sink)}
    print(f"{'line':<22}{'batch':>6}  {'unlocked us/rec':>22}  {'locked us/rec':>22}  {'lock':>7}")
    for label, ids in (("read (1 id)", 1), ("search (20 ids)", 20)):
        line = fhir_line(ids)
        for records in BATCHES:
            batch = line * records
            times: dict[str, list[float]] = {name: [] for name in variants}
            for write in variants.values():
                per_record(write, batch, records)  # warm-up
            for _ in range(RUNS):  # alternate, so both see the same machine
                for name, write in variants.items():
                    times[name].append(per_record(write, batch, records))
            cells = [_cell(times[name]) for name in ("unlocked", "locked")]
            extra = statistics.median(times["locked"]) - statistics.median(times["unlocked"])
            print(
                f"{label + f' {len(line)} B':<22}{records:>6}  {cells[0]:>22}  {cells[1]:>22}  "
                f"{extra:+7.3f}"
            )
    os.close(write_end)


def _cell(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"


if __name__ == "__main__":
    main()
