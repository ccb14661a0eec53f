"""The JSON /metrics document: the reference's request counters, then the server's state."""

from __future__ import annotations

from typing import TypedDict

from carebench.backends.base import BackendStats
from carebench.metrics.latency import LatencySummary
from carebench.metrics.process import ProcessStats
from carebench.patterns.stats import PatternStats


class RequestSnapshot(TypedDict):
    """Requests counted since start-up, by outcome, and their latency (the reference's fields,
    a superset)."""

    pattern: str
    total_requests: int
    success_requests: int
    error_requests: int
    rejected_requests: int
    timeout_requests: int
    cancelled_requests: int
    invalid_requests: int
    error_rate_percent: float
    rejection_rate_percent: float
    timeout_rate_percent: float
    duration_seconds: float
    requests_per_second: float
    latency_ms: LatencySummary
    success_latency_ms: LatencySummary
    rejection_latency_ms: LatencySummary
    #: HTTP status (as a string: a JSON key) -> responses.
    status_codes: dict[str, int]
    #: HdrHistogram's compressed base64 encoding of every latency.
    latency_histogram: str


class ServerState(TypedDict):
    """The pattern's and the backend's state: what an in-process run records of its server."""

    pattern_state: PatternStats
    backend: BackendStats


class MetricsDocument(RequestSnapshot, ServerState):
    """GET /metrics: the request counters, the server's state and its process."""

    process: ProcessStats
