"""The writer: records handed over without blocking, refusals when it cannot keep up or its
sink failed, and every record written on close."""

from __future__ import annotations

import threading

import pytest

from carebench.audit.record import AuditRecord
from carebench.audit.trail import AuditTrail
from tests.audit.conftest import MemorySink, trail_for


def a_record(number: int) -> AuditRecord:
    return AuditRecord(1.0e9, f"r{number}", None, None, None, "read", ("P1",), 200, None, 0.001)


def serve(trail: AuditTrail, count: int) -> int:
    """Reserve and commit `count` records as requests would; how many were admitted."""
    admitted = 0
    for number in range(count):
        if trail.reserve():
            trail.commit(a_record(number))
            admitted += 1
    return admitted


def test_close_writes_every_record_in_order() -> None:
    """Close flushes all that was handed over, then closes the sink."""
    sink = MemorySink()
    trail = trail_for(sink, capacity=10_000)
    trail.start()
    assert serve(trail, 2000) == 2000
    trail.close()
    assert [line["request_id"] for line in sink.lines()] == [f"r{n}" for n in range(2000)]
    assert sink.closed
    stats = trail.stats()
    assert (stats["written"], stats["lost"], stats["pending"], stats["refused"]) == (2000, 0, 0, 0)
    assert stats["state"] == "closed" and stats["sink"] == "memory"


def test_a_closed_trail_refuses() -> None:
    """After close, a request cannot reserve a record: it is refused and counted."""
    trail = trail_for(MemorySink())
    trail.start()
    trail.close()
    assert not trail.reserve()
    assert trail.refused == 1


def test_a_trail_never_started_writes_on_close() -> None:
    """A server that failed to start still writes what it recorded."""
    sink = MemorySink()
    trail = trail_for(sink)
    serve(trail, 3)
    trail.close()
    assert len(sink.lines()) == 3 and sink.closed


def test_a_full_trail_refuses_until_the_writer_catches_up() -> None:
    """With the sink stuck, `capacity` requests are admitted and the rest refused; once it
    moves again the trail admits again."""
    sink = MemorySink()
    sink.hold = threading.Event()
    trail = trail_for(sink, capacity=5)
    trail.start()
    assert serve(trail, 1) == 1
    assert sink.entered.wait(10)  # the writer is inside the sink, holding one record
    assert serve(trail, 20) == 4
    assert trail.refused == 16 and trail.pending == 5
    sink.hold.set()
    trail.close()
    assert trail.written == 5 and trail.pending == 0
    assert len(sink.lines()) == 5


def test_reservations_in_flight_count_against_capacity() -> None:
    """A request being served holds its place: capacity bounds records not yet written."""
    trail = trail_for(MemorySink(), capacity=2)
    assert trail.reserve() and trail.reserve()
    assert not trail.reserve()
    assert trail.pending == 2


def test_a_failing_sink_stops_admission_and_counts_the_lost() -> None:
    """A write error: the batch is lost (counted), the state is failed with the reason, and
    every later request is refused."""
    sink = MemorySink()
    sink.fail = OSError(28, "No space left on device")
    trail = trail_for(sink)
    trail.start()
    assert serve(trail, 3) == 3
    trail.close()
    assert trail.lost == 3 and trail.written == 0
    assert trail.state == "failed"
    assert trail.error == "OSError: No space left on device"
    assert not trail.reserve()
    assert trail.stats()["refused"] == 1


def test_records_after_a_failure_are_lost_not_written() -> None:
    """Once failed, records handed over are counted lost without touching the sink again."""
    sink = MemorySink()
    trail = trail_for(sink)
    sink.fail = BrokenPipeError(32, "Broken pipe")
    serve(trail, 2)
    trail._write_all()
    sink.fail = None
    trail.commit(a_record(9))
    trail._write_all()
    assert (trail.lost, trail.written, sink.writes) == (3, 0, 0)


def test_a_sink_that_fails_to_close_marks_the_trail_failed() -> None:
    """An error closing the file (a lost flush) is a failure too."""

    class BadClose(MemorySink):
        def close(self) -> None:
            raise OSError(5, "Input/output error")

    trail = trail_for(BadClose())
    trail.close()
    assert trail.state == "failed" and "Input/output error" in (trail.error or "")


def test_fhir_format_writes_audit_events() -> None:
    """--audit-format fhir: each line is an AuditEvent."""
    sink = MemorySink()
    trail = trail_for(sink, fmt="fhir")
    serve(trail, 2)
    trail.close()
    assert [line["resourceType"] for line in sink.lines()] == ["AuditEvent"] * 2
    assert trail.stats()["format"] == "fhir"


def test_a_writer_stuck_in_its_sink_is_left_behind_on_close(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Close waits `timeout` for a hung sink, then says how many records are unwritten and
    returns (the process must still exit); the sink is not closed under the writer."""
    sink = MemorySink()
    sink.hold = threading.Event()
    trail = trail_for(sink)
    trail.start()
    serve(trail, 3)
    assert sink.entered.wait(10)
    trail.close(timeout=0.01)
    assert "records still unwritten" in caplog.text
    assert not sink.closed and trail.pending > 0
    sink.hold.set()
