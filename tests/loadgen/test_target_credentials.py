"""A --token goes with the load test's own requests to a --target: the pre-flight /health and
the /metrics it reads. Beyond loopback (a Kubernetes Job driving a Service), a server with
--auth answers those only to a credential, so without it the run could not even start.

The stand-in server below plays that server: 401 unless the right bearer token comes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from carebench.loadgen.config import LoadConfig
from carebench.loadgen.runner import TargetUnreachable, check_target, fetch_json, server_faults
from carebench.loadgen.sampler import HttpMetricsProbe

TOKEN = "header.payload.signature"
HEADERS = LoadConfig(token=TOKEN).headers


class _LockedServer(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.headers.get("Authorization") == f"Bearer {TOKEN}":
            status, body = 200, b'{"backend": {"faults": []}}'
        else:
            status, body = 401, b'{"error": "missing credential"}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def locked_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _LockedServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_pre_flight_sends_the_token(locked_url: str) -> None:
    """check_target passes with the token's header and reports the 401 without it."""
    check_target(locked_url, None, HEADERS)
    with pytest.raises(TargetUnreachable, match="answered 401"):
        check_target(locked_url)


def test_metrics_reads_send_the_token(locked_url: str) -> None:
    """fetch_json and server_faults read /metrics with the token; without it they get None."""
    assert fetch_json(locked_url + "/metrics", None, HEADERS) == {"backend": {"faults": []}}
    assert server_faults(locked_url, None, HEADERS) == []
    assert fetch_json(locked_url + "/metrics") is None


async def test_metrics_probe_sends_the_token(locked_url: str) -> None:
    """The sampler's probe gets past the lock with the token (the stand-in's document is not
    carebench's, which is the next check), and is refused without it."""
    port = int(locked_url.rsplit(":", 1)[1])
    for headers, refusal in ((HEADERS, "not a carebench metrics document"), (None, "401")):
        probe = HttpMetricsProbe("127.0.0.1", port, headers=headers)
        try:
            with pytest.raises(ValueError, match=refusal):
                await probe()
        finally:
            probe.close()
