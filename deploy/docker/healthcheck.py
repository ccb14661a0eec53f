"""The image's HEALTHCHECK: exit 0 when `carebench serve` in this container answers
GET /health/live on 127.0.0.1, 1 otherwise.

Kubernetes ignores HEALTHCHECK (the Deployment has its own probes); this serves `docker run`.
The port is CAREBENCH_PORT (default 8080): a port given only as a --port flag is not seen.
HTTPS is tried first when CAREBENCH_TLS_CERT is set, plain HTTP first otherwise, then the
other, so a server given --tls-cert as a flag is found too. The certificate is not verified:
it names the Service, not 127.0.0.1, and the check only asks whether the process answers.
Standard library only, so that it runs in the image without importing carebench.
"""

from __future__ import annotations

import http.client
import os
import ssl
import sys
import urllib.request

LIVE_PATH = "/health/live"


def schemes(environ: dict[str, str]) -> tuple[str, str]:
    """The order to try: HTTPS first when the server is configured for it by the environment."""
    return ("https", "http") if environ.get("CAREBENCH_TLS_CERT") else ("http", "https")


def answers(url: str, timeout: float = 2.0) -> bool:
    """Whether GET `url` answers 200."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            return bool(response.status == 200)
    except (OSError, http.client.HTTPException):  # refused, reset, or not HTTP at all
        return False


def main(environ: dict[str, str]) -> int:
    port = environ.get("CAREBENCH_PORT", "8080")
    for scheme in schemes(environ):
        if answers(f"{scheme}://127.0.0.1:{port}{LIVE_PATH}"):
            return 0
    print(f"no answer from {LIVE_PATH} on port {port}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(dict(os.environ)))
