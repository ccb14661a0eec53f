"""Run `carebench serve` as a child process: start, wait until ready, stop gracefully."""

from __future__ import annotations

import os
import re
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from types import TracebackType

_LISTENING = re.compile(r"listening on (https?://\S+)")


class ServerProcessError(RuntimeError):
    """The server process failed to start or to become ready; the message has its output."""


class ServerProcess:
    """A `carebench serve --port 0` child; use as a context manager.

    Over HTTPS the readiness check uses `tls` (a client context; one with a client
    certificate when the server requires one), or without it trusts whatever certificate the
    server shows: it asks only whether our own child is up, on loopback.
    """

    def __init__(
        self,
        args: Sequence[str] = (),
        startup_timeout: float = 20.0,
        cpus: set[int] | None = None,
        env: dict[str, str] | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.args = ["--port", "0", *args]
        self.startup_timeout = startup_timeout
        self.cpus = cpus
        self.env = env
        self.tls = tls
        self.url = ""
        self.output: list[str] = []
        self._process: subprocess.Popen[str] | None = None
        self._signalled = False

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def start(self) -> str:
        """Start the server and return its base URL once /health answers."""
        command = [sys.executable, "-m", "carebench", "serve", *self.args]
        self._process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **(self.env or {})},
            # Its own process group: a Ctrl-C meant for the parent must not reach the server
            # mid-run; the parent stops it with SIGTERM and collects its final metrics.
            process_group=0,
        )
        if self.cpus:
            os.sched_setaffinity(self._process.pid, self.cpus)
        self.url = self._read_url()
        self._wait_healthy()
        return self.url

    def _read_url(self) -> str:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            self.output.append(line.rstrip("\n"))
            match = _LISTENING.search(line)
            if match:
                return match.group(1)
        self._process.wait()
        raise ServerProcessError(self._failure("exited before listening"))

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        context = self._readiness_context()
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(
                    self.url + "/health", timeout=1.0, context=context
                ) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ssl.SSLError, ConnectionError, TimeoutError) as error:
                refusal = _tls_refusal(error)
                if refusal is not None:
                    # The server is up and the handshake failed: waiting will not change that.
                    self.stop()
                    raise ServerProcessError(self._failure(f"failed TLS: {refusal}")) from None
                time.sleep(0.02)  # polling readiness, not waiting a fixed time
        self.stop()
        raise ServerProcessError(self._failure(f"not healthy after {self.startup_timeout:g}s"))

    def _readiness_context(self) -> ssl.SSLContext | None:
        if not self.url.startswith("https://"):
            return None
        if self.tls is not None:
            return self.tls
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context

    def terminate(self, sig: int = signal.SIGTERM) -> None:
        """Ask the server to drain and exit, once (a second signal may force an exit)."""
        if self._process is not None and self._process.poll() is None and not self._signalled:
            self._process.send_signal(sig)
            self._signalled = True

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Signal the server (unless already done), wait for it to drain and exit; its status."""
        process = self._process
        if process is None:
            return 0
        self.terminate(sig)
        try:
            remaining, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            remaining, _ = process.communicate()
        self.output.extend((remaining or "").splitlines())
        return process.returncode

    def _failure(self, what: str) -> str:
        tail = "\n".join(self.output[-20:])
        return f"carebench serve {' '.join(self.args)} {what}:\n{tail}"

    def __enter__(self) -> ServerProcess:
        try:
            self.start()
        except BaseException:
            self.stop()  # interrupted while it started (Ctrl-C, SIGTERM): leave no orphan
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _tls_refusal(error: BaseException) -> ssl.SSLError | None:
    """The TLS error of a failed readiness check, unless it may pass on a retry (an EOF while
    the server is still starting)."""
    reason = getattr(error, "reason", error)
    if isinstance(reason, ssl.SSLError) and not isinstance(
        reason, ssl.SSLEOFError | ssl.SSLZeroReturnError
    ):
        return reason
    return None
