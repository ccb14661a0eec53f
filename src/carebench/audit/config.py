"""`serve --audit-log PATH|- --audit-format json|fhir` (see docs/security.md)."""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass

from carebench.audit.record import ENCODERS
from carebench.audit.sinks import STDOUT, FdSink, open_sink
from carebench.audit.trail import AuditTrail
from carebench.errors import ConfigError
from carebench.registry import check_choice
from carebench.settings import INT, changed_flags, setting

AUDIT_FORMATS = tuple(ENCODERS)


@dataclass(frozen=True, slots=True)
class AuditConfig:
    """Whether and where every access attempt to patient data is recorded.

    Not forwarded to the servers a load test starts: several servers appending to one file
    (or to the load test's standard output) is not what a user asking for an audit log meant.
    """

    audit_log: str | None = setting(
        None,
        "--audit-log",
        "record every access attempt to patient data, one line each, in FILE (appended) or "
        "- (standard output); requests are refused (503) when a record cannot be written",
        forwarded=False,
        metavar="FILE",
    )
    audit_format: str = setting(
        "json",
        "--audit-format",
        "--audit-log lines: json (carebench's fields) or fhir (FHIR R4 AuditEvent)",
        choices=AUDIT_FORMATS,
        forwarded=False,
    )
    audit_queue_size: int = setting(
        10_000,
        "--audit-queue-size",
        "--audit-log: records in flight or waiting to be written at most; past it, requests "
        "are refused (503) until the writer catches up",
        INT,
        forwarded=False,
    )

    def __post_init__(self) -> None:
        check_choice("--audit-format", "audit format", self.audit_format, AUDIT_FORMATS)
        if self.audit_queue_size < 1:
            raise ConfigError(f"--audit-queue-size ({self.audit_queue_size}) must be >= 1")
        if self.audit_log is None:
            changed = changed_flags(self)
            if changed:
                raise ConfigError(f"{changed[0]} has no effect without --audit-log FILE|-")
        elif self.audit_log != STDOUT:
            folder = os.path.dirname(os.path.abspath(self.audit_log))
            if not os.path.isdir(folder):
                raise ConfigError(f"--audit-log {self.audit_log}: no such directory {folder}")

    def check_log(self) -> None:
        """ConfigError when --audit-log cannot be opened for appending, as `build_trail` would
        raise it: for the process that starts server processes (`serve --processes`, granian's
        workers), so a bad path is its own `error:` and not a child's that failed to start.

        Opens (creating it, as a server would) and closes it, unless it is a FIFO: opening
        one waits for its reader, and closing it could end the reader's input."""
        if self.audit_log is None or self.audit_log == STDOUT:
            return
        with contextlib.suppress(OSError):  # missing (or unreachable): the open says why
            if stat.S_ISFIFO(os.stat(self.audit_log).st_mode):
                return
        self._open_sink().close()

    def build_trail(self) -> AuditTrail | None:
        """The trail requests are recorded in (None without --audit-log), its sink open;
        ConfigError when the file cannot be opened for appending."""
        if self.audit_log is None:
            return None
        encode = ENCODERS[self.audit_format]
        return AuditTrail(self._open_sink(), encode, self.audit_queue_size, self.audit_format)

    def _open_sink(self) -> FdSink:
        assert self.audit_log is not None
        try:
            return open_sink(self.audit_log)
        except OSError as exc:
            raise ConfigError(
                f"--audit-log {self.audit_log}: cannot open it for appending ({exc.strerror})"
            ) from None
