"""Audit sinks: a regular file takes each batch in one write; a pipe takes it in whole-line
chunks no larger than PIPE_BUF, the most a pipe keeps whole with several writers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from carebench.audit import sinks
from carebench.audit.sinks import ATOMIC_PIPE_WRITE, line_chunks, open_sink

lines_of_text = st.lists(st.binary(max_size=300).map(lambda b: b.replace(b"\n", b"")), max_size=60)


@given(lines_of_text, st.integers(1, 1000))
def test_chunks_are_whole_lines_within_the_limit(lines: list[bytes], limit: int) -> None:
    """The chunks put together are the data; each ends at a line end and holds at most
    `limit` bytes, unless it is one line longer than that."""
    data = b"".join(line + b"\n" for line in lines)
    chunks = [bytes(chunk) for chunk in line_chunks(data, limit)]
    assert b"".join(chunks) == data
    for chunk in chunks:
        assert chunk.endswith(b"\n")
        assert len(chunk) <= limit or chunk.count(b"\n") == 1


def test_a_last_line_without_its_end_is_kept() -> None:
    """Data that does not end with a newline loses nothing."""
    assert [bytes(c) for c in line_chunks(b"ab\ncd\nef", 4)] == [b"ab\n", b"cd\n", b"ef"]
    assert [bytes(c) for c in line_chunks(b"abcdef", 4)] == [b"abcdef"]


def record_writes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every os.write the sinks make from now on."""
    sizes: list[int] = []
    real_write = os.write

    def write(fd: int, data: bytes | memoryview) -> int:
        sizes.append(len(data))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    return sizes


BATCH = b"".join(b'{"request_id":"r-%04d","padding":"%s"}\n' % (n, b"x" * 200) for n in range(100))


def test_a_regular_file_takes_a_batch_in_one_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """O_APPEND puts one write whole at the end of the file: the batch is not split."""
    sink = open_sink(str(tmp_path / "audit.log"))
    assert sink.chunk is None
    sizes = record_writes(monkeypatch)
    sink.write(BATCH)
    sink.close()
    assert sizes == [len(BATCH)]
    assert (tmp_path / "audit.log").read_bytes() == BATCH


def test_a_pipe_takes_whole_lines_of_at_most_pipe_buf(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A FIFO given as the log (or standard output on a pipe) gets chunks of whole lines,
    none over PIPE_BUF, and every byte of the batch in order."""
    fifo = tmp_path / "audit.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        sink = open_sink(str(fifo))
        assert sink.chunk == ATOMIC_PIPE_WRITE
        sizes = record_writes(monkeypatch)
        sink.write(BATCH)
        sink.close()
        received = os.read(reader, 2 * len(BATCH))
    finally:
        os.close(reader)
    assert received == BATCH
    assert len(sizes) > 1 and max(sizes) <= ATOMIC_PIPE_WRITE
    assert sum(sizes) == len(BATCH)


def test_what_is_chunked_is_what_is_not_a_regular_file(tmp_path: Path) -> None:
    """A pipe (standard output piped to a log collector) is chunked; a regular file (standard
    output redirected to one) is written whole."""
    read_end, write_end = os.pipe()
    try:
        assert sinks._chunk_for(write_end) == ATOMIC_PIPE_WRITE
    finally:
        os.close(read_end)
        os.close(write_end)
    with (tmp_path / "out").open("wb") as out:
        assert sinks._chunk_for(out.fileno()) is None


#: A writer process: `count` batches to the sink `target`, each a short line and two lines
#: longer than PIPE_BUF (FHIR searches of many ids are that long), as the audit writer does.
WRITER = """
import json, sys
from carebench.audit.sinks import open_sink
target, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
sink = open_sink(target)
for batch in range(count):
    lines = [
        json.dumps({"writer": name, "n": 3 * batch + i, "ids": "x" * size})
        for i, size in enumerate((200, 5_000, 20_000))
    ]
    sink.write("".join(line + "\\n" for line in lines).encode())
sink.close()
"""
WRITERS = 4
BATCHES = 60


def read_all(fd: int, into: list[bytes]) -> None:
    """Read `fd` to its end in small reads, so the pipe stays full and writers block."""
    while chunk := os.read(fd, 1024):
        into.append(chunk)


@pytest.mark.parametrize("shared", ["stdout", "fifo"])
def test_lines_longer_than_pipe_buf_are_never_interleaved(shared: str, tmp_path: Path) -> None:
    """Four processes write batches with lines of 5 and 20 KB to one pipe at once (their one
    inherited standard output, or a FIFO each opened): every line read is one whole record,
    and every record arrives once."""
    if shared == "fifo":
        target = tmp_path / "audit.fifo"
        os.mkfifo(target)
        read_end = os.open(target, os.O_RDONLY | os.O_NONBLOCK)
        write_end = os.open(target, os.O_WRONLY)  # held open until the writers are done
        os.set_blocking(read_end, True)
    else:
        read_end, write_end = os.pipe()
    received: list[bytes] = []
    reader = threading.Thread(target=read_all, args=(read_end, received))
    reader.start()
    try:
        argv = [sys.executable, "-c", WRITER, "-" if shared == "stdout" else str(target)]
        writers = [
            subprocess.Popen([*argv, str(n), str(BATCHES)], stdout=write_end)
            for n in range(WRITERS)
        ]
        statuses = [writer.wait(timeout=60) for writer in writers]
    finally:
        os.close(write_end)
        reader.join(timeout=60)
        os.close(read_end)
    assert statuses == [0] * WRITERS
    lines = b"".join(received).split(b"\n")
    assert lines.pop() == b""
    records = [json.loads(line) for line in lines]  # a torn line does not parse
    seen = sorted((record["writer"], record["n"]) for record in records)
    assert seen == [(str(w), n) for w in range(WRITERS) for n in range(3 * BATCHES)]
