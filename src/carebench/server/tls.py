"""HTTPS for `serve --tls-cert/--tls-key` (and mutual TLS with `--tls-client-ca`).

Both servers offer the same protocols: TLS 1.2 and 1.3 only, and on TLS 1.2 only ECDHE key
exchange with an AEAD cipher (what granian's rustls offers, so uvicorn matches it; uvicorn's
own default would allow CBC suites). The files are loaded once when the settings are checked,
so a missing file, a key that does not match its certificate or a file that is not PEM is an
`error:` at start-up (and before a load test starts any server), not a traceback.
"""

from __future__ import annotations

import os
import ssl

from carebench.errors import ConfigError

MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2
#: TLS 1.2 suites (TLS 1.3 suites are not set by this string): forward secret and AEAD only.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


def check_tls_settings(cert: str | None, key: str | None, client_ca: str | None) -> None:
    """Raise ConfigError unless the TLS settings make a server context (or there are none)."""
    if cert is None and key is None:
        if client_ca is not None:
            raise ConfigError(
                "--tls-client-ca verifies client certificates over HTTPS: add --tls-cert and "
                "--tls-key, or remove --tls-client-ca"
            )
        return
    server_context(cert, key, client_ca)


def server_context(cert: str | None, key: str | None, client_ca: str | None) -> ssl.SSLContext:
    """A TLS 1.2+ server context with the certificate chain and key loaded; with `client_ca`,
    clients must present a certificate issued by it. ConfigError names what is wrong."""
    if cert is None or key is None:
        given, missing = ("--tls-cert", "--tls-key") if key is None else ("--tls-key", "--tls-cert")
        raise ConfigError(f"{given} needs {missing} too (a certificate and its private key)")
    for flag, path in (("--tls-cert", cert), ("--tls-key", key), ("--tls-client-ca", client_ca)):
        if path is not None:
            _check_readable(flag, path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = MINIMUM_VERSION
    context.set_ciphers(TLS12_CIPHERS)
    load_key_pair(context, ("--tls-cert", cert), ("--tls-key", key))
    if client_ca is not None:
        load_ca(context, "--tls-client-ca", client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def load_key_pair(context: ssl.SSLContext, cert: tuple[str, str], key: tuple[str, str]) -> None:
    """Load a certificate chain and its key, each given as (flag, path); ConfigError when they
    do not load. An encrypted key is refused rather than prompted for on the terminal."""
    (cert_flag, cert_path), (key_flag, key_path) = cert, key
    try:
        context.load_cert_chain(cert_path, key_path, password=_no_password)
    except ssl.SSLError as error:
        raise ConfigError(
            f"{cert_flag} ({cert_path}) and {key_flag} ({key_path}) do not load as a PEM "
            f"certificate chain and its unencrypted private key ({_reason(error)}); is the key "
            "the certificate's? (decrypt a key with: openssl pkey -in KEY -out PLAIN_KEY)"
        ) from None


def load_ca(context: ssl.SSLContext, flag: str, path: str) -> None:
    """Trust the PEM certificates in `path`; ConfigError when none load."""
    _check_readable(flag, path)
    try:
        context.load_verify_locations(cafile=path)
    except ssl.SSLError as error:
        raise ConfigError(
            f"{flag} ({path}) holds no PEM CA certificate ({_reason(error)})"
        ) from None


def _check_readable(flag: str, path: str) -> None:
    if not os.path.isfile(path):
        raise ConfigError(f"{flag}: no such file {path!r}")
    if not os.access(path, os.R_OK):
        raise ConfigError(f"{flag}: cannot read {path!r} (permission denied)")


def _no_password() -> bytes:
    return b""


def _reason(error: ssl.SSLError) -> str:
    return str(error.reason or error.strerror or error).lower().replace("_", " ")
