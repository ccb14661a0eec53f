"""`GET /debug/profile?seconds=N`: a CPU profile of the live server (the analogue of Go's
/debug/pprof/profile), served only with --enable-profiling and only to loopback clients."""

from __future__ import annotations

import asyncio

from pyinstrument import Profiler
from pyinstrument.renderers import SpeedscopeRenderer

MAX_SECONDS = 60.0
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
FORMATS = {"html": b"text/html; charset=utf-8", "speedscope": b"application/json"}


class ProfileRequestError(ValueError):
    """The profile request is invalid; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class LiveProfiler:
    """Samples the event-loop thread for a while; one profile at a time."""

    def __init__(self) -> None:
        self._busy = False

    def check(self, client_host: str | None, seconds_text: str | None, fmt: str | None) -> float:
        """Validate a request; the number of seconds to profile."""
        if client_host not in LOOPBACK:
            raise ProfileRequestError(403, "profiling is only served to loopback clients")
        if fmt is not None and fmt not in FORMATS:
            raise ProfileRequestError(400, f"unknown format {fmt!r}: use html or speedscope")
        try:
            seconds = float("5" if seconds_text is None else seconds_text)
        except ValueError:
            raise ProfileRequestError(
                400, f"seconds must be a number, got {seconds_text!r}"
            ) from None
        if not 0 < seconds <= MAX_SECONDS:
            raise ProfileRequestError(400, f"seconds must be in (0, {MAX_SECONDS:g}]")
        if self._busy:
            raise ProfileRequestError(409, "a profile is already being taken; try again later")
        return seconds

    async def profile(self, seconds: float, fmt: str = "html") -> tuple[bytes, bytes]:
        """(body, content type) of a profile of everything the loop ran for `seconds`."""
        self._busy = True
        # async_mode "disabled": sample the whole thread (all requests), not just this task.
        profiler = Profiler(interval=0.001, async_mode="disabled")
        try:
            profiler.start()
            await asyncio.sleep(seconds)
            session = profiler.stop()
        finally:
            self._busy = False
        if fmt == "speedscope":
            body = SpeedscopeRenderer().render(session).encode()
        else:
            body = profiler.output_html().encode()
        return body, FORMATS[fmt]
