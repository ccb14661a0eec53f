"""What `carebench tune --output` and `carebench capacity --output` write."""

from __future__ import annotations

from typing import Literal, TypedDict

from carebench.loadgen.machine import MachineDescription
from carebench.tuning.search import Candidate, CapacityStatus, Probe

TUNING_SCHEMA_VERSION = 1


class ScenarioReport(TypedDict):
    """The load every run of a search applies (the rate of a capacity probe varies)."""

    mode: str
    #: closed (N clients back to back) or open (arrivals per second).
    loop: str
    #: Closed loop: clients; open loop: most connections.
    concurrency: int
    #: Open loop: arrivals per second (a capacity search: its first rate).
    rate: float | None
    duration_seconds: float
    warmup_seconds: float
    trials: int
    #: The `carebench serve` flags of every server started (the searched one left at its
    #: default here: each candidate or probe sets its own).
    server_args: list[str]


class ParameterReport(TypedDict):
    """The tuned setting: its field name, its flag and the range searched."""

    name: str
    flag: str
    low: float
    high: float


class TuneDocument(TypedDict):
    """The search for the best static setting of one pattern in one scenario."""

    schema_version: int
    kind: Literal["tune"]
    pattern: str
    parameter: ParameterReport
    #: A candidate meets the target when the median of its trials' p99 of successes is at or
    #: under this.
    target_p99_ms: float
    #: How the best is chosen among the candidates that meet the target.
    rule: str
    scenario: ScenarioReport
    #: The most runs the search could make (candidates x trials), said before it started.
    max_runs: int
    runs: int
    #: Sorted by value.
    candidates: list[Candidate]
    #: None when no candidate met the target.
    best: Candidate | None
    #: The flags that set the best value, e.g. ["--limit", "22"].
    best_flags: list[str] | None
    machine: MachineDescription


class SloReport(TypedDict):
    text: str
    percentile: str
    threshold_ms: float
    max_failed_percent: float


class PatternCapacity(TypedDict):
    """One pattern's capacity search."""

    pattern: str
    #: The highest rate that passed (None: not even the lowest rate did).
    capacity_per_second: float | None
    #: found; at-least-max-rate (every rate up to --max-rate passed); below-min-rate.
    status: CapacityStatus
    #: In the order run.
    probes: list[Probe]
    runs: int
    #: Median of the judged percentile over the trials at the capacity rate.
    percentile_ms_at_capacity: float | None


class CapacityDocument(TypedDict):
    """The highest open-loop arrival rate each pattern sustains within an SLO."""

    schema_version: int
    kind: Literal["capacity"]
    slo: SloReport
    #: When a rate passes, in words.
    rule: str
    precision_percent: float
    start_rate: float
    max_rate: float
    #: The most probes per pattern the search could make, said before it started.
    max_probes: int
    scenario: ScenarioReport
    patterns: list[PatternCapacity]
    machine: MachineDescription
