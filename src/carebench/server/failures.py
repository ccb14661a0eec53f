"""What a patient lookup that failed is answered: the status, outcome and message for each
failure a pattern or backend raises (docs/api.md, "Status codes")."""

from __future__ import annotations

import logging
import math
from typing import NamedTuple

from carebench.errors import (
    BackendError,
    DeadlineExceeded,
    PatientNotFound,
    RateLimited,
    Rejected,
)
from carebench.models import Query

log = logging.getLogger("carebench.server")

#: What a request cut by the end of the drain is told: retry (elsewhere) in a second.
RETRY_NOW = [(b"retry-after", b"1")]


class Failure(NamedTuple):
    """The error answer to one lookup, and how the metrics count it."""

    outcome: str
    status: int
    message: str
    headers: list[tuple[bytes, bytes]] | None = None


#: The drain ran out (or a second signal came) with the request running: an answer the
#: client can retry, instead of uvicorn's 500 and a traceback.
SHUTTING_DOWN = Failure("rejected", 503, "server shutting down", RETRY_NOW)


def failure_for(problem: Exception, query: Query, deadlines: dict[str, float]) -> Failure:
    """The answer to `query` when the pattern or backend raised `problem`; an exception none
    of them should raise is logged with its traceback and answered 500."""
    if isinstance(problem, Rejected):
        # A rate limit is 429 (slow down); lack of capacity is 503 (try later).
        retry = [(b"retry-after", str(max(1, math.ceil(problem.retry_after))).encode())]
        if isinstance(problem, RateLimited):
            return Failure("rejected", 429, f"rate limited: {problem.reason}", retry)
        return Failure("rejected", 503, f"rejected: {problem.reason}", retry)
    if isinstance(problem, DeadlineExceeded):
        budget = deadlines[query.priority]
        return Failure("timeout", 504, f"deadline exceeded ({budget:g}s, {query.priority})")
    if isinstance(problem, BackendError):
        return Failure("error", 500, f"database error: {problem}")
    if isinstance(problem, PatientNotFound):
        return Failure("invalid", 404, f"patient not found: {query.patient_id}")
    log.error("unexpected failure serving request %s", query.request_id, exc_info=problem)
    return Failure("error", 500, "internal error")
