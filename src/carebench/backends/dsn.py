"""What a PostgreSQL DSN names, for messages that must never show its password."""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

DEFAULT_PORT = 5432


@dataclass(frozen=True, slots=True)
class DsnParts:
    """Host, port, user and database of a `postgresql://` DSN, libpq's defaults filled in."""

    host: str
    port: int
    user: str
    database: str
    password: str | None

    @property
    def where(self) -> str:
        """`host:port`, or the socket directory for a unix socket."""
        return self.host if self.host.startswith("/") else f"{self.host}:{self.port}"


def dsn_parts(dsn: str) -> DsnParts:
    """The parts of `dsn`; ValueError when it is not a postgresql:// URL."""
    url = urlsplit(dsn)
    if url.scheme not in ("postgresql", "postgres"):
        raise ValueError("expected postgresql://user@host:port/database")
    query = parse_qs(url.query)
    host = url.hostname or _first(query, "host") or os.environ.get("PGHOST") or "localhost"
    port = url.port or int(_first(query, "port") or os.environ.get("PGPORT") or DEFAULT_PORT)
    user = url.username or _first(query, "user") or os.environ.get("PGUSER") or getpass.getuser()
    database = url.path.lstrip("/") or _first(query, "dbname") or os.environ.get("PGDATABASE")
    return DsnParts(host, port, user, database or user, url.password)


def _first(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


def redact_dsn(dsn: str) -> str:
    """The DSN without its password, fit for a banner, a log or an error message."""
    scheme, sep, rest = dsn.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in credentials:
        return dsn
    return f"{scheme}://{credentials.partition(':')[0]}:***@{host}"
