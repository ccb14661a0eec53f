"""Result files are written whole or not at all."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from carebench.report.files import write_atomically


def test_writes_text_and_bytes(tmp_path: Path) -> None:
    """Text is written as UTF-8, bytes as they are, replacing what was there."""
    target = tmp_path / "out.json"
    target.write_text("old", encoding="utf-8")
    write_atomically(target, '{"é": 1}\n')
    assert target.read_text(encoding="utf-8") == '{"é": 1}\n'
    write_atomically(str(target), b"\x89PNG")
    assert target.read_bytes() == b"\x89PNG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


@pytest.mark.parametrize("existed", [True, False])
def test_interrupted_write_leaves_old_file_or_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, existed: bool
) -> None:
    """A Ctrl-C before the rename leaves the old content (or no file) and no partial file."""
    target = tmp_path / "results.csv"
    if existed:
        target.write_text("a,b\n1,2\n", encoding="utf-8")

    def interrupted(source: object, destination: object) -> None:
        assert Path(str(source)).read_bytes() == b"x" * 100_000  # complete, beside the target
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_atomically(target, "x" * 100_000)
    remaining = sorted(p.name for p in tmp_path.iterdir())
    if existed:
        assert remaining == ["results.csv"]
        assert target.read_text(encoding="utf-8") == "a,b\n1,2\n"
    else:
        assert remaining == []


def test_a_fifo_is_written_through(tmp_path: Path) -> None:
    """A target that is not a regular file (a FIFO, /dev/stdout) is written directly."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        write_atomically(fifo, "through\n")
        assert os.read(reader, 100) == b"through\n"
    finally:
        os.close(reader)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]
