"""Secure by default: no unlocked server beyond loopback without --insecure."""

from __future__ import annotations

import subprocess
import sys

import pytest

from carebench.auth.config import AuthConfig
from carebench.errors import ConfigError
from carebench.server.config import ServerConfig
from carebench.server.exposure import check_exposure, is_loopback_host
from tests.tls.pki import make_pki


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("localhost", True), ("::1", True), ("127.0.0.2", True),
     ("0.0.0.0", False), ("::", False), ("10.0.0.7", False), ("myhost.example", False)],
)  # fmt: skip
def test_which_hosts_count_as_loopback(host: str, loopback: bool) -> None:
    """Any name but localhost may resolve anywhere: counted as exposed."""
    assert is_loopback_host(host) is loopback


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20"])
def test_an_exposed_unlocked_server_is_refused(host: str) -> None:
    """--auth none beyond loopback: an error saying why and naming the way out."""
    with pytest.raises(ConfigError) as refused:
        check_exposure(ServerConfig(host=host), AuthConfig())
    message = str(refused.value)
    assert f"--host {host}" in message
    assert "--auth none lets anyone" in message
    assert "--insecure" in message


def test_insecure_says_the_user_knows() -> None:
    """--insecure lets it start."""
    check_exposure(ServerConfig(host="0.0.0.0"), AuthConfig(insecure=True))


def test_access_control_and_tls_unlock_exposure(tmp_path, signing_key) -> None:
    """--auth jwt meets the access-control half of the rule, --tls-cert/--tls-key the
    encryption half; each alone is refused, naming the other."""
    pki = make_pki(tmp_path)
    tls = ServerConfig(host="0.0.0.0", tls_cert=str(pki.server_cert), tls_key=str(pki.server_key))
    jwt = AuthConfig("jwt", str(signing_key.pem))

    with pytest.raises(ConfigError, match="without --tls-cert/--tls-key") as no_tls:
        check_exposure(ServerConfig(host="0.0.0.0"), jwt)
    assert "--auth none" not in str(no_tls.value)
    with pytest.raises(ConfigError, match="--auth none lets anyone") as no_auth:
        check_exposure(tls, AuthConfig())
    assert "--tls-cert" not in str(no_auth.value)
    check_exposure(tls, jwt)


def test_loopback_needs_nothing() -> None:
    """The default host starts unlocked, as before."""
    check_exposure(ServerConfig(), AuthConfig())


def test_serve_exits_2_with_the_reason() -> None:
    """The real command: exit 2, `error: ...` on stderr, no traceback, nothing listening."""
    result = subprocess.run(
        [sys.executable, "-m", "carebench", "serve", "--host", "0.0.0.0", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("error: refusing to listen on --host 0.0.0.0")
    assert "Traceback" not in result.stderr
    assert "listening" not in result.stdout


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"auth": "jwt"}, "--auth jwt needs --jwt-key"),
        ({"auth": "apikey"}, "--auth apikey needs --api-keys"),
        ({"jwt_key": "x.pem"}, "--jwt-key has no effect with --auth none"),
        ({"api_keys": "keys"}, "--api-keys has no effect with --auth none"),
        ({"auth": "jwd"}, "did you mean 'jwt'"),
        ({"auth": "jwt", "jwt_key": "/nonexistent.pem"}, "cannot read"),
    ],
)
def test_auth_settings_that_do_not_fit(kwargs, message) -> None:
    """Each misfit is an error naming the flag and the fix."""
    with pytest.raises(ConfigError, match=message):
        AuthConfig(**kwargs)
