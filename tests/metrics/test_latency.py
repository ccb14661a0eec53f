"""LatencyRecorder: HdrHistogram percentiles, merging, buckets and clamping."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram

from carebench.metrics.latency import HIGHEST_US, LatencyRecorder

#: HdrHistogram with 3 significant digits is accurate to 0.1 %.
PRECISION = 1e-3


def one_to_thousand_ms() -> LatencyRecorder:
    recorder = LatencyRecorder()
    for ms in range(1, 1001):
        recorder.record(ms / 1000)
    return recorder


def test_percentiles_of_known_samples() -> None:
    """1..1000 ms gives median ~500, p90 ~900, p95 ~950, p99 ~990 within 0.1 %."""
    summary = one_to_thousand_ms().summary_ms()

    assert summary["median"] == pytest.approx(500, rel=PRECISION)
    assert summary["p90"] == pytest.approx(900, rel=PRECISION)
    assert summary["p95"] == pytest.approx(950, rel=PRECISION)
    assert summary["p99"] == pytest.approx(990, rel=PRECISION)
    assert summary["p99_9"] == pytest.approx(999, rel=PRECISION)
    assert summary["mean"] == pytest.approx(500.5, rel=PRECISION)


def test_min_and_max_of_known_samples() -> None:
    """min and max are the smallest and largest recorded values (within 0.1 %)."""
    recorder = one_to_thousand_ms()

    summary = recorder.summary_ms()

    assert summary["min"] == pytest.approx(1.0, rel=PRECISION)
    assert summary["max"] == pytest.approx(1000.0, rel=PRECISION)
    assert recorder.count == 1000


def test_empty_summary_is_all_zeros() -> None:
    """An empty recorder summarises to zeros under the same keys, and has no spectrum."""
    recorder = LatencyRecorder()

    summary = recorder.summary_ms()

    assert set(summary) == set(one_to_thousand_ms().summary_ms())
    assert set(summary.values()) == {0.0}
    assert recorder.count == 0
    assert recorder.spectrum_ms() == []
    assert recorder.total_seconds() == 0.0


def test_merge_adds_the_other_recorders_values() -> None:
    """Merging two halves gives the summary of the whole; the source is left unchanged."""
    low, high = LatencyRecorder(), LatencyRecorder()
    for ms in range(1, 501):
        low.record(ms / 1000)
    for ms in range(501, 1001):
        high.record(ms / 1000)

    low.merge(high)

    assert low.count == 1000
    assert high.count == 500
    assert low.summary_ms() == one_to_thousand_ms().summary_ms()


def test_merged_builds_a_new_recorder_from_many() -> None:
    """LatencyRecorder.merged sums the counts of every recorder into a fresh one."""
    recorders = [LatencyRecorder() for _ in range(3)]
    for i, recorder in enumerate(recorders):
        for _ in range(i + 1):
            recorder.record(0.01 * (i + 1))

    total = LatencyRecorder.merged(recorders)

    assert total.count == 6
    assert total.summary_ms()["max"] == pytest.approx(30.0, rel=PRECISION)
    assert [r.count for r in recorders] == [1, 2, 3]


def test_spectrum_is_monotonic_and_ends_at_the_total() -> None:
    """The percentile spectrum never decreases and ends at 100 % with every value counted."""
    spectrum = one_to_thousand_ms().spectrum_ms()

    assert len(spectrum) > 10
    for key in ("percentile", "value_ms", "count"):
        values = [point[key] for point in spectrum]
        assert values == sorted(values), key
    assert spectrum[-1]["percentile"] == 100.0
    assert spectrum[-1]["count"] == 1000


@pytest.mark.parametrize("seconds", [0.0, -1.0])
def test_zero_and_negative_values_clamp_to_one_microsecond(seconds: float) -> None:
    """Values below the trackable range are recorded as 1 us rather than rejected."""
    recorder = LatencyRecorder()

    recorder.record(seconds)

    assert recorder.count == 1
    assert recorder.summary_ms()["min"] == 0.001


def test_huge_values_clamp_to_sixty_seconds() -> None:
    """Values above the trackable range are recorded as 60 s rather than raising."""
    recorder = LatencyRecorder()

    recorder.record(1e6)

    assert recorder.count == 1
    assert recorder.summary_ms()["max"] == pytest.approx(60_000, rel=PRECISION)


def test_record_corrected_back_fills_missed_samples() -> None:
    """A 1 s value with a 100 ms expected interval also records 0.9, 0.8, ... 0.1 s."""
    recorder = LatencyRecorder()

    recorder.record_corrected(1.0, expected_interval=0.1)

    assert recorder.count == 10
    assert recorder.summary_ms()["min"] == pytest.approx(100, rel=PRECISION)


def test_total_seconds_approximates_the_sum() -> None:
    """total_seconds (Prometheus _sum) is the sum of recorded values within 0.1 %."""
    recorder = LatencyRecorder()
    for _ in range(10):
        recorder.record(0.1)
    recorder.record(0.5)

    assert recorder.total_seconds() == pytest.approx(1.5, rel=PRECISION)


def test_encode_round_trips_through_hdrhistogram() -> None:
    """The encoded histogram decodes back to the same count and percentiles."""
    recorder = one_to_thousand_ms()

    decoded = HdrHistogram.decode(recorder.encode())

    assert decoded.get_total_count() == 1000
    assert decoded.get_value_at_percentile(50.0) / 1000 == recorder.percentile_ms(50.0)


@pytest.mark.parametrize("significant_figures", [2, 3])
def test_counts_and_encoding_match_recording_into_hdrh_directly(significant_figures: int) -> None:
    """The lazily built histogram equals one fed value by value: same counts, same encoding."""
    rng = random.Random(7)
    edges = [1, 2, 1023, 1024, 2047, 2048, 99_999, HIGHEST_US]
    values = edges + [rng.randint(1, HIGHEST_US) for _ in range(5000)]
    values += [rng.randint(1, 5000) for _ in range(5000)]
    recorder = LatencyRecorder(significant_figures)
    direct = HdrHistogram(1, HIGHEST_US, significant_figures)
    for micros in values:
        recorder.record(micros / 1_000_000)
        direct.record_value(max(1, int(micros / 1_000_000 * 1_000_000)))
    assert recorder.encode() == direct.encode().decode()
    assert recorder.count == direct.get_total_count()
    assert recorder.summary_ms()["max"] == direct.get_max_value() / 1000.0
    assert recorder.percentile_ms(99.0) == direct.get_value_at_percentile(99.0) / 1000.0


def test_histogram_is_rebuilt_after_new_values() -> None:
    """A summary read between recordings sees the values recorded after it."""
    recorder = LatencyRecorder()
    recorder.record(0.001)
    assert recorder.summary_ms()["max"] == pytest.approx(1.0, rel=1e-3)
    recorder.record(0.5)
    assert recorder.summary_ms()["max"] == pytest.approx(500.0, rel=1e-3)


@pytest.mark.parametrize("figures", [2, 3])
def test_record_many_counts_exactly_what_record_would(figures: int) -> None:
    """The vectorised path lands every value in the same slot as `record`, clamps the same,
    and keeps the same count, sum and sum of squares (more values than one chunk)."""
    rng = random.Random(7)
    values = [
        rng.choice([rng.uniform(0, 70), rng.expovariate(1000), rng.uniform(0, 2e-6)])
        for _ in range(9_000)
    ]
    values += [0.0, 1e-6, 59.999_999, 60.0, 3600.0]
    one_by_one, at_once = LatencyRecorder(figures), LatencyRecorder(figures)
    for value in values:
        one_by_one.record(value)
    at_once.record_many(np.array(values))
    assert at_once.count == one_by_one.count == len(values)
    assert at_once.summary_ms() == one_by_one.summary_ms()
    assert at_once.spectrum_ms() == one_by_one.spectrum_ms()
    assert at_once.encode() == one_by_one.encode()
