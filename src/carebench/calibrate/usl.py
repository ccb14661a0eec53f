"""The Universal Scalability Law fitted to latencies measured at increasing concurrency.

The simulator's capacity model (backends/simulator.py) says the mean latency of a query with N
queries running at once is

    L(N) = L1 * (1 + sigma*(N-1) + kappa*N*(N-1))

which is linear in (L1, L1*sigma, L1*kappa), so linear least squares finds all three at once.
Throughput follows by Little's law, X(N) = N / L(N), and peaks at N* = sqrt((1-sigma)/kappa).

Each level's equation is divided by its measured latency, so the fit minimises *relative*
errors: latencies span two orders of magnitude between N=1 and N=128, and plain least squares
would let the slowest level decide L1 alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, TypedDict

import numpy as np

#: The simulator takes contention in [0, 1); a fit at or above 1 (throughput falling from N=1
#: on) is held here and reported as clamped.
SIGMA_MAX = 0.99
#: Coefficients smaller than this are rounding error: sigma and kappa this small change no
#: latency by a measurable amount at any concurrency a pool allows.
ROUNDING = 1e-12
#: Fewest distinct concurrency levels that determine three coefficients.
MIN_LEVELS = 3


class UslPoint(NamedTuple):
    """One measured level: concurrency, mean latency (s) and throughput (queries/s)."""

    concurrency: int
    latency: float
    throughput: float


class FitDocument(TypedDict):
    """A fit as it appears in `carebench calibrate --json`."""

    single_query_ms: float
    sigma: float
    kappa: float
    #: The bounds the unconstrained fit crossed, e.g. "kappa -0.00012 -> 0".
    clamped: list[str]
    #: Concurrency of peak throughput; None when kappa is 0 (throughput never falls).
    peak_concurrency: float | None
    peak_throughput: float | None
    #: Of latency against the fitted curve; None when every level measured the same latency.
    r_squared: float | None
    #: Mean |predicted - measured| / measured throughput over the fitted levels.
    throughput_error: float
    levels: list[int]


@dataclass(frozen=True, slots=True)
class UslFit:
    """Fitted coefficients and how well they describe the levels they came from."""

    single_latency: float
    sigma: float
    kappa: float
    clamped: tuple[str, ...]
    r_squared: float | None
    throughput_error: float
    levels: tuple[int, ...]

    def latency(self, concurrency: float) -> float:
        """Predicted mean latency (s) with `concurrency` queries running at once."""
        n = concurrency
        return self.single_latency * (1.0 + self.sigma * (n - 1) + self.kappa * n * (n - 1))

    def throughput(self, concurrency: float) -> float:
        """Predicted queries per second at `concurrency` (Little's law)."""
        return concurrency / self.latency(concurrency)

    @property
    def peak_concurrency(self) -> float:
        """Where throughput peaks: sqrt((1-sigma)/kappa); infinite when kappa is 0."""
        if self.kappa == 0:
            return math.inf
        return math.sqrt((1.0 - self.sigma) / self.kappa)

    @classmethod
    def from_document(cls, document: FitDocument) -> UslFit:
        """The fit a saved `calibrate --json` document describes."""
        return cls(
            single_latency=document["single_query_ms"] / 1000,
            sigma=document["sigma"],
            kappa=document["kappa"],
            clamped=tuple(document["clamped"]),
            r_squared=document["r_squared"],
            throughput_error=document["throughput_error"],
            levels=tuple(document["levels"]),
        )

    def as_document(self) -> FitDocument:
        peak = self.peak_concurrency
        finite = math.isfinite(peak)
        return {
            "single_query_ms": self.single_latency * 1000,
            "sigma": self.sigma,
            "kappa": self.kappa,
            "clamped": list(self.clamped),
            "peak_concurrency": peak if finite else None,
            "peak_throughput": self.throughput(peak) if finite else None,
            "r_squared": self.r_squared,
            "throughput_error": self.throughput_error,
            "levels": list(self.levels),
        }


@dataclass(frozen=True, slots=True)
class _Candidate:
    """A least-squares solution with sigma and/or kappa held at a bound (None = free)."""

    single_latency: float
    sigma: float
    kappa: float
    residual: float
    fixed: tuple[str, ...]

    @property
    def feasible(self) -> bool:
        return self.single_latency > 0 and 0 <= self.sigma <= SIGMA_MAX and self.kappa >= 0


def _snapped(coefficient: float) -> float:
    """Rounding error of a coefficient that is exactly 0 (-5e-18) is 0, not a clamp."""
    return 0.0 if abs(coefficient) < ROUNDING else coefficient


def _solve(
    n: np.ndarray, latency: np.ndarray, sigma: float | None, kappa: float | None
) -> _Candidate:
    """Weighted least squares for L1 and whichever of sigma, kappa is free."""
    ones = np.ones_like(n)
    contention, coherency = n - 1, n * (n - 1)
    base = ones + (sigma or 0.0) * contention + (kappa or 0.0) * coherency
    columns = [base]
    if sigma is None:
        columns.append(contention)
    if kappa is None:
        columns.append(coherency)
    design = np.column_stack(columns) / latency[:, None]
    solution, *_ = np.linalg.lstsq(design, ones, rcond=None)
    residual = float(np.sum((design @ solution - ones) ** 2))
    coefficients = iter(solution[1:])
    l1 = float(solution[0])
    fitted_sigma = sigma if sigma is not None else _snapped(float(next(coefficients)) / l1)
    fitted_kappa = kappa if kappa is not None else _snapped(float(next(coefficients)) / l1)
    fixed = tuple(name for name, value in (("sigma", sigma), ("kappa", kappa)) if value is not None)
    return _Candidate(l1, fitted_sigma, fitted_kappa, residual, fixed)


def _constrained(n: np.ndarray, latency: np.ndarray) -> tuple[_Candidate, _Candidate]:
    """The unconstrained solution, and the best one within 0 <= sigma <= SIGMA_MAX, kappa >= 0.

    The problem is a convex quadratic in (L1, L1*sigma, L1*kappa) with linear bounds, so its
    optimum is the best feasible optimum over the faces: each bound either free or held.
    """
    free = _solve(n, latency, None, None)
    if free.feasible:
        return free, free
    faces = [
        _solve(n, latency, sigma, kappa)
        for sigma in (None, 0.0, SIGMA_MAX)
        for kappa in (None, 0.0)
        if sigma is not None or kappa is not None
    ]
    feasible = [face for face in faces if face.feasible]
    if not feasible:
        raise ValueError("no positive single-query latency fits these levels")
    return free, min(feasible, key=lambda face: face.residual)


def _clamp_notes(free: _Candidate, chosen: _Candidate) -> tuple[str, ...]:
    raw = {"sigma": free.sigma, "kappa": free.kappa}
    held = {"sigma": chosen.sigma, "kappa": chosen.kappa}
    return tuple(f"{name} {raw[name]:.3g} -> {held[name]:g}" for name in chosen.fixed)


def fit_usl(points: Sequence[UslPoint]) -> UslFit:
    """L1, sigma and kappa by least squares over `points` (at least three concurrencies)."""
    if len({point.concurrency for point in points}) < MIN_LEVELS:
        raise ValueError(f"the fit needs at least {MIN_LEVELS} distinct concurrency levels")
    if any(point.latency <= 0 or point.throughput <= 0 for point in points):
        raise ValueError("every fitted level needs a positive latency and throughput")
    n = np.array([float(point.concurrency) for point in points])
    latency = np.array([point.latency for point in points])
    throughput = np.array([point.throughput for point in points])
    free, chosen = _constrained(n, latency)
    predicted = chosen.single_latency * (1 + chosen.sigma * (n - 1) + chosen.kappa * n * (n - 1))
    spread = float(np.sum((latency - latency.mean()) ** 2))
    r_squared = 1.0 - float(np.sum((latency - predicted) ** 2)) / spread if spread > 0 else None
    return UslFit(
        single_latency=chosen.single_latency,
        sigma=chosen.sigma,
        kappa=chosen.kappa,
        clamped=_clamp_notes(free, chosen),
        r_squared=r_squared,
        throughput_error=float(np.mean(np.abs(n / predicted - throughput) / throughput)),
        levels=tuple(point.concurrency for point in points),
    )
