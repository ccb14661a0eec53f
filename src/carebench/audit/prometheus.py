"""The audit trail's families on GET /metrics?format=prometheus."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from carebench.audit.trail import AuditState

#: carebench_audit_sink_state{state} is 1 for the trail's state, 0 for the others.
STATES = ("ok", "failed", "closed")


class AuditCounts(Protocol):
    """What the families are read from: an AuditTrail, or the added counts of the processes
    of `serve --processes` (metrics/processes.py)."""

    @property
    def written(self) -> int: ...
    @property
    def refused(self) -> int: ...
    @property
    def lost(self) -> int: ...
    @property
    def pending(self) -> int: ...
    @property
    def state(self) -> AuditState: ...


class AuditCollector(Collector):
    """Records written, requests refused for want of one, records lost, pending; sink state."""

    def __init__(self, trail: AuditCounts) -> None:
        self._trail = trail

    def collect(self) -> Iterator[Metric]:
        trail = self._trail
        for name, help_text, value in (
            ("written", "Audit records written to the sink", trail.written),
            (
                "refused",
                "Patient requests refused (503) because their audit record could not be kept",
                trail.refused,
            ),
            ("lost", "Audit records of answered requests that the failed sink lost", trail.lost),
        ):
            counter = CounterMetricFamily(f"carebench_audit_records_{name}", help_text)
            counter.add_metric([], value)
            yield counter
        pending = GaugeMetricFamily(
            "carebench_audit_pending", "Audit records in flight or waiting to be written"
        )
        pending.add_metric([], trail.pending)
        yield pending
        state = GaugeMetricFamily(
            "carebench_audit_sink_state", "1 for the audit sink's state", labels=["state"]
        )
        for name in STATES:
            state.add_metric([name], float(trail.state == name))
        yield state
