"""What a verified credential stands for, and how verification fails."""

from __future__ import annotations

from typing import Protocol

from carebench.auth.scopes import Grant


class InvalidCredential(Exception):
    """The credential was refused (HTTP 401, `error="invalid_token"`); the message says why
    in a few fixed words (it goes into a header: ASCII, no quotes)."""


class Principal:
    """Who is asking (`subject`, a token's `sub` or an API key's digest prefix), the patient
    their `patient/` scopes are limited to (the token's `patient` claim), their grant, and
    the application asking for them (a token's `client_id`, else `azp`)."""

    __slots__ = ("client_id", "grant", "patient", "subject")

    def __init__(
        self,
        subject: str,
        grant: Grant,
        patient: str | None = None,
        client_id: str | None = None,
    ) -> None:
        self.subject = subject
        self.grant = grant
        self.patient = patient
        self.client_id = client_id


class Verifier(Protocol):
    """Turns the credential a request carries into a Principal."""

    def verify(self, credential: str) -> Principal:
        """Raises InvalidCredential."""
        ...
