"""Result files are written whole or not at all."""

from __future__ import annotations

import os
from pathlib import Path


def write_atomically(path: str | Path, data: str | bytes) -> None:
    """Write `data` (text as UTF-8) to `path`, which then holds its old content or all of
    `data`, never a part: an interrupted command (Ctrl-C, SIGTERM, a second one, SIGKILL)
    leaves no truncated result file.

    The data goes to a hidden file beside the target, renamed over it when complete (a rename
    within one file system is atomic). A target that is not a regular file (/dev/stdout, a
    FIFO) cannot be replaced and is written directly. No fsync: this guards against
    interruption, not against power loss.
    """
    target = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    if target.exists() and not target.is_file():
        target.write_bytes(payload)
        return
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        partial.write_bytes(payload)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
