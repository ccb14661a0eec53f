"""Certificates made for the test session with trustme (never committed keys): a CA that
issues the servers' certificate, another that issues client certificates (mutual TLS), and
a CA nobody uses, to be trusted when the right one is not."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass(frozen=True)
class Pki:
    """PEM files of the session's certificates."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_ca: Path
    client_cert: Path
    client_key: Path
    #: The key of a second server certificate (paired with the wrong certificate in tests).
    other_key: Path
    unrelated_ca: Path


def make_pki(directory: Path) -> Pki:
    """Issue the certificates and write them as PEM files into `directory`."""
    server_ca, client_ca, unrelated = trustme.CA(), trustme.CA(), trustme.CA()
    server = server_ca.issue_cert("127.0.0.1", "localhost")
    other = server_ca.issue_cert("127.0.0.1")
    client = client_ca.issue_cert("loadgen@carebench.test")

    def write(name: str, blob: trustme.Blob) -> Path:
        path = directory / name
        blob.write_to_path(str(path))
        return path

    def write_chain(name: str, leaf: trustme.LeafCert) -> Path:
        path = directory / name
        path.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        return path

    return Pki(
        ca=write("ca.pem", server_ca.cert_pem),
        server_cert=write_chain("server.pem", server),
        server_key=write("server.key", server.private_key_pem),
        client_ca=write("client-ca.pem", client_ca.cert_pem),
        client_cert=write_chain("client.pem", client),
        client_key=write("client.key", client.private_key_pem),
        other_key=write("other.key", other.private_key_pem),
        unrelated_ca=write("unrelated-ca.pem", unrelated.cert_pem),
    )
