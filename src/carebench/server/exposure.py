"""Secure by default: a server reachable beyond this machine must be locked, or the user must
say `--insecure` knowing what that means."""

from __future__ import annotations

import ipaddress

from carebench.auth.config import AuthConfig
from carebench.errors import ConfigError
from carebench.server.config import ServerConfig


def is_loopback_host(host: str) -> bool:
    """Whether `--host` listens on loopback only (a name other than localhost counts as not:
    it may resolve anywhere)."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(server: ServerConfig, auth: AuthConfig) -> None:
    """ConfigError (exit 2) for a non-loopback --host without access control or without TLS,
    unless --insecure; the message says why and how to fix it."""
    if is_loopback_host(server.host) or auth.insecure:
        return
    reasons = []
    if auth.auth == "none":
        reasons.append(
            "--auth none lets anyone who can reach it read patient records (use --auth jwt "
            "or --auth apikey)"
        )
    if not server.tls:
        reasons.append(
            "without --tls-cert/--tls-key, records and credentials cross the network in clear text"
        )
    if reasons:
        raise ConfigError(
            f"refusing to listen on --host {server.host} (beyond this machine): "
            + "; ".join(reasons)
            + ". Add --insecure to start anyway."
        )
