"""Exceptions shared by patterns, backends, the server and the CLI."""

from __future__ import annotations


class ConfigError(ValueError):
    """A setting is invalid; the message names the option, the value and the rule."""


class Rejected(Exception):
    """The pattern refused to admit the request (HTTP 503 with Retry-After)."""

    def __init__(self, reason: str, retry_after: float = 1.0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class DeadlineExceeded(Exception):
    """The request's deadline passed before it was answered (HTTP 504)."""


class BackendError(Exception):
    """The backend failed to answer the query (HTTP 500)."""


class ClientGone(Exception):
    """The client disconnected before its request was worked on; no one reads the answer."""


class RateLimited(Rejected):
    """Refused by a rate limit (HTTP 429 with Retry-After), not by lack of capacity."""


class PatientNotFound(Exception):
    """The backend has no patient with that id (HTTP 404). Not a failure of the database."""


class BackendUnavailable(Exception):
    """The backend cannot serve at all (unreachable, wrong password, unseeded); the message
    names the problem and the fix."""
