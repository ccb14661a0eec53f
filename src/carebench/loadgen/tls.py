"""The load generator's side of HTTPS: which servers it trusts and the certificate it shows.

A `--target https://...` is verified like any client would: against the system's CAs, or
only the CAs of `--cacert` (as curl's option of that name), with its hostname checked.
Servers a load test starts with `--tls-cert` are trusted by that very certificate (their
address, 127.0.0.1, must be in it). `--insecure` turns verification off, and says so.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

from carebench.errors import ConfigError
from carebench.server.tls import MINIMUM_VERSION, load_ca, load_key_pair
from carebench.settings import SWITCH, changed_flags, setting

INSECURE_WARNING = (
    "warning: --insecure: server certificates are NOT verified; anyone on the path can read "
    "and change this traffic (trust the server's CA with --cacert FILE instead)"
)


@dataclass(frozen=True, slots=True)
class ClientTLSConfig:
    """How the load generator speaks TLS to https:// servers."""

    cacert: str | None = setting(
        None,
        "--cacert",
        "trust only the CA certificates in this PEM file (default: the system's)",
        metavar="FILE",
    )
    insecure: bool = setting(
        False,
        "--insecure",
        "do not verify server certificates (a warning says so); for tests only",
        SWITCH,
    )
    client_cert: str | None = setting(
        None,
        "--client-cert",
        "mutual TLS: present this PEM certificate (chain); needs --client-key",
        metavar="FILE",
    )
    client_key: str | None = setting(
        None, "--client-key", "the PEM private key of --client-cert (unencrypted)", metavar="FILE"
    )

    def __post_init__(self) -> None:
        if self.insecure and self.cacert is not None:
            raise ConfigError(
                "--cacert names whom to trust and --insecure trusts anyone: remove one of them"
            )
        if (self.client_cert is None) != (self.client_key is None):
            given, missing = (
                ("--client-cert", "--client-key")
                if self.client_key is None
                else ("--client-key", "--client-cert")
            )
            raise ConfigError(f"{given} needs {missing} too (a certificate and its private key)")
        client_context(self)  # a missing or unreadable file fails here, before any run

    @property
    def configured(self) -> bool:
        """Whether any TLS client setting was given."""
        return bool(changed_flags(self))

    def check_used(self, https: bool, where: str) -> None:
        """Refuse TLS client settings when nothing is spoken over TLS (`where` says why)."""
        if not https and self.configured:
            flags = ", ".join(changed_flags(self))
            raise ConfigError(f"{flags}: no effect, {where}. Remove them.")


def client_context(config: ClientTLSConfig, server_cert: str | None = None) -> ssl.SSLContext:
    """A TLS 1.2+ client context for `config`; `server_cert` (a server's own --tls-cert) is
    trusted too, as the end of a chain. ConfigError when a file does not load."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = MINIMUM_VERSION
    if config.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif config.cacert is None and server_cert is None:
        context.load_default_certs()
    else:
        if config.cacert is not None:
            load_ca(context, "--cacert", config.cacert)
        if server_cert is not None:
            load_ca(context, "--tls-cert", server_cert)
            # The server's own certificate is trusted as it is, not only a CA above it.
            context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    if config.client_cert is not None and config.client_key is not None:
        load_key_pair(
            context, ("--client-cert", config.client_cert), ("--client-key", config.client_key)
        )
    return context
