"""The USL fit: exact on noise-free data, close on noisy data, honest about its bounds."""

from __future__ import annotations

import math
import random

import pytest

from carebench.calibrate.usl import SIGMA_MAX, UslFit, UslPoint, fit_usl

LEVELS = (1, 2, 4, 8, 16, 32, 64, 128)


def usl_latency(l1: float, sigma: float, kappa: float, n: int) -> float:
    return l1 * (1 + sigma * (n - 1) + kappa * n * (n - 1))


def points(
    l1: float, sigma: float, kappa: float, levels=LEVELS, noise: float = 0.0, seed: int = 1
) -> list[UslPoint]:
    """Levels measured exactly (or with multiplicative noise), throughput by Little's law."""
    rng = random.Random(seed)
    made = []
    for n in levels:
        latency = usl_latency(l1, sigma, kappa, n) * (1 + rng.gauss(0, noise))
        made.append(UslPoint(n, latency, n / latency))
    return made


@pytest.mark.parametrize(
    ("l1", "sigma", "kappa"),
    [(0.075, 0.03, 0.001), (0.0008, 0.2, 0.0), (0.02, 0.0, 0.004), (0.005, 0.0, 0.0)],
)
def test_recovers_known_coefficients_exactly_from_noise_free_data(l1, sigma, kappa) -> None:
    """Synthetic levels from L1, sigma and kappa give back those three, with a perfect fit."""
    fit = fit_usl(points(l1, sigma, kappa))

    assert fit.single_latency == pytest.approx(l1, rel=1e-9)
    assert fit.sigma == pytest.approx(sigma, rel=1e-9, abs=1e-12)
    assert fit.kappa == pytest.approx(kappa, rel=1e-9, abs=1e-12)
    assert fit.clamped == ()
    assert fit.throughput_error == pytest.approx(0, abs=1e-9)
    assert fit.levels == LEVELS


def test_recovers_coefficients_within_tolerance_from_noisy_data() -> None:
    """3 % noise on each level's latency moves sigma and kappa by well under 25 %."""
    for seed in range(20):
        fit = fit_usl(points(0.05, 0.05, 0.002, noise=0.03, seed=seed))

        assert fit.single_latency == pytest.approx(0.05, rel=0.05)
        assert fit.sigma == pytest.approx(0.05, rel=0.25)
        assert fit.kappa == pytest.approx(0.002, rel=0.25)
        assert 0 < fit.throughput_error < 0.05
        assert fit.r_squared is not None and fit.r_squared > 0.99


def test_relative_errors_keep_the_slow_levels_from_deciding_single_query_latency() -> None:
    """A 5 % error at N=128 (hundreds of ms) barely moves L1, which N=1 (tens of ms) decides."""
    exact = points(0.02, 0.05, 0.002)
    skewed = [*exact[:-1], exact[-1]._replace(latency=exact[-1].latency * 1.05)]

    assert fit_usl(skewed).single_latency == pytest.approx(0.02, rel=0.01)


def test_negative_coherency_is_clamped_to_zero_and_said() -> None:
    """Latency growing slower than linear would need kappa < 0; the fit holds it at 0."""
    fit = fit_usl(points(0.02, 0.05, -0.0001, levels=(1, 2, 4, 8, 16)))

    assert fit.kappa == 0
    assert fit.sigma > 0
    assert len(fit.clamped) == 1 and fit.clamped[0].startswith("kappa -0.0001")
    assert math.isinf(fit.peak_concurrency)


def test_negative_contention_is_clamped_to_zero_and_the_rest_refitted() -> None:
    """sigma < 0 is not a database; holding it at 0 refits L1 and kappa to the levels."""
    fit = fit_usl(points(0.02, -0.02, 0.003))

    assert fit.sigma == 0
    assert fit.kappa > 0
    assert fit.clamped and fit.clamped[0].startswith("sigma -0.02")


def test_contention_above_one_is_held_below_it() -> None:
    """Throughput falling from N=1 on (sigma >= 1) is held at SIGMA_MAX, which serve accepts."""
    fit = fit_usl(points(0.01, 1.5, 0.0, levels=(1, 2, 4, 8)))

    assert fit.sigma == SIGMA_MAX
    assert any(note.startswith("sigma 1.5") for note in fit.clamped)


def test_peak_is_where_predicted_throughput_is_highest() -> None:
    """N* = sqrt((1-sigma)/kappa) beats its neighbours, and is infinite without coherency."""
    fit = fit_usl(points(0.075, 0.03, 0.001))

    peak = fit.peak_concurrency
    assert peak == pytest.approx(math.sqrt(0.97 / 0.001))
    assert fit.throughput(peak) > max(fit.throughput(peak * 0.9), fit.throughput(peak * 1.1))
    assert math.isinf(fit_usl(points(0.075, 0.03, 0.0)).peak_concurrency)


def test_throughput_error_compares_prediction_with_measured_throughput() -> None:
    """Every level measured 10 % below Little's law shows as a 10 % mean throughput error."""
    exact = points(0.02, 0.05, 0.002)
    slower = [p._replace(throughput=p.throughput * 0.9) for p in exact]

    assert fit_usl(slower).throughput_error == pytest.approx(1 / 0.9 - 1)


def test_flat_latency_has_no_r_squared() -> None:
    """Identical latencies at every level leave nothing for R^2 to explain: None, not NaN."""
    fit = fit_usl([UslPoint(n, 0.01, n / 0.01) for n in (1, 2, 4)])

    assert fit.r_squared is None
    assert (fit.sigma, fit.kappa) == pytest.approx((0, 0), abs=1e-12)


@pytest.mark.parametrize(
    "measured",
    [
        [UslPoint(1, 0.01, 100), UslPoint(2, 0.011, 180)],
        [UslPoint(1, 0.01, 100), UslPoint(1, 0.01, 100), UslPoint(2, 0.011, 180)],
        [UslPoint(1, 0.01, 100), UslPoint(2, 0.0, 0), UslPoint(4, 0.02, 200)],
    ],
)
def test_too_few_levels_or_empty_ones_are_refused(measured) -> None:
    """Three coefficients need three distinct levels, each with a latency."""
    with pytest.raises(ValueError, match="level"):
        fit_usl(measured)


def test_the_json_document_describes_the_same_fit() -> None:
    """as_document and from_document round-trip; the peak is null when kappa is 0."""
    fit = fit_usl(points(0.075, 0.03, 0.001))
    document = fit.as_document()

    assert UslFit.from_document(document) == fit
    assert document["single_query_ms"] == pytest.approx(75)
    assert document["peak_throughput"] == pytest.approx(fit.throughput(fit.peak_concurrency))
    assert fit_usl(points(0.075, 0.03, 0.0)).as_document()["peak_concurrency"] is None
