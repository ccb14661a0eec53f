"""Properties of LatencyRecorder, the HdrHistogram every latency figure comes from, against
hdrh's own HdrHistogram as the oracle.

What each property protects:
* the inlined counts-list fast path puts every value where hdrh's `record_value` does, so
  the encoding (the counts, slot by slot), count, min, max and percentiles are hdrh's, for
  any value in range and at every bucket boundary; values outside 1 us .. 60 s are clamped;
* `record_many` (vectorised, chunked) records exactly what `record` does value by value;
* merging recorders equals recording every value in one recorder (encoding, count, summary,
  total), in any order and grouping (associative, commutative), and reading a recorder
  before more values or a merge arrive never leaves a stale histogram behind;
* the summary's mean and standard deviation are those of the recorded whole microseconds.
"""

from __future__ import annotations

import math
import random
from fractions import Fraction

import numpy as np
from hdrh.histogram import HdrHistogram
from hypothesis import example, given
from hypothesis import strategies as st

from carebench.metrics.latency import (
    HIGHEST_US,
    LOWEST_US,
    SIGNIFICANT_FIGURES,
    LatencyRecorder,
)
from tests.property.bounds import BOUNDED, HEAVY

#: Values at HdrHistogram's bucket edges (sub-buckets of 2048 at 3 significant figures).
EDGES = sorted(
    {min(HIGHEST_US, max(LOWEST_US, (2**k) + d)) for k in range(0, 26) for d in (-1, 0, 1)}
)
micros = st.one_of(
    st.integers(LOWEST_US, HIGHEST_US),
    st.integers(LOWEST_US, 5000),
    st.sampled_from(EDGES),
)
#: Durations in seconds as measured: sub-microsecond, negative (a clock step), beyond 60 s.
seconds = st.one_of(
    st.floats(0.0, 2.0),
    st.floats(-1.0, 1e-5),
    st.floats(50.0, 1e6),
    micros.map(lambda us: (us + 0.5) / 1e6),
)
value_lists = st.lists(seconds, max_size=30)
#: Values close together (one base, a few microseconds apart): where float arithmetic on
#: sums of squares cancels.
clustered = st.tuples(
    st.one_of(micros, st.integers(30_000_000, HIGHEST_US)),
    st.lists(st.integers(0, 3), min_size=1, max_size=12),
).map(lambda pair: [max(LOWEST_US, pair[0] - offset) for offset in pair[1]])


def as_micros(duration: float) -> int:
    """What the recorder stores: whole microseconds (truncated), clamped to the range."""
    return min(HIGHEST_US, max(LOWEST_US, int(duration * 1_000_000)))


def oracle(durations: list[float]) -> HdrHistogram:
    histogram = HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)
    for duration in durations:
        histogram.record_value(as_micros(duration))
    return histogram


def recorded(durations: list[float]) -> LatencyRecorder:
    recorder = LatencyRecorder()
    for duration in durations:
        recorder.record(duration)
    return recorder


def contents(recorder: LatencyRecorder) -> tuple[object, ...]:
    """What two recorders holding the same values agree on: count, encoding (every slot),
    summary (percentiles, min, max, mean, stddev) and total."""
    return recorder.count, recorder.encode(), recorder.summary_ms(), recorder.total_seconds()


def assert_same(recorder: LatencyRecorder, other: LatencyRecorder) -> None:
    assert contents(recorder) == contents(other)


@BOUNDED
@given(st.lists(micros, min_size=1, max_size=30), st.floats(0.0, 100.0))
@example([1, 2047, 2048, 2049, 4095, 4096, 60_000_000], 100.0)
@example([HIGHEST_US], 0.0)
def test_fast_path_puts_every_value_where_hdrh_does(values: list[int], percentile: float) -> None:
    """Recorded through the counts list, whole microseconds give hdrh's own histogram:
    the same encoding, count, min, max and percentiles."""
    recorder = recorded([(us + 0.5) / 1e6 for us in values])
    histogram = HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)
    for us in values:
        histogram.record_value(us)
    assert recorder.encode() == histogram.encode().decode()
    assert recorder.count == histogram.get_total_count()
    summary = recorder.summary_ms()
    assert summary["min"] == histogram.get_min_value() / 1000
    assert summary["max"] == histogram.get_max_value() / 1000
    assert summary["p99"] == histogram.get_value_at_percentile(99.0) / 1000
    assert (
        recorder.percentile_ms(percentile) == histogram.get_value_at_percentile(percentile) / 1000
    )


@BOUNDED
@given(st.lists(seconds, min_size=1, max_size=30))
@example([-5.0, 0.0, 4e-7, 61.0, 1e9])
def test_durations_are_clamped_whole_microseconds(durations: list[float]) -> None:
    """Any duration is recorded as its whole microseconds clamped to 1 us .. 60 s: the
    encoding is hdrh's for those values."""
    assert recorded(durations).encode() == oracle(durations).encode().decode()


@BOUNDED
@given(st.one_of(st.lists(micros, min_size=1, max_size=40), clustered))
@example([HIGHEST_US] * 3 + [HIGHEST_US - 1])
@example([HIGHEST_US, HIGHEST_US - 1, HIGHEST_US])
@example([1, 1, 1, 2])
def test_mean_and_stddev_are_those_of_the_values(values: list[int]) -> None:
    """The summary's mean and population standard deviation are the values' own (in ms,
    to the microsecond), however large and close together the values are."""
    summary = recorded([(us + 0.5) / 1e6 for us in values]).summary_ms()
    mean = Fraction(sum(values), len(values))
    variance = sum((Fraction(us) - mean) ** 2 for us in values) / len(values)
    assert summary["mean"] == round(float(mean) / 1000, 3)
    assert abs(summary["stddev"] - math.sqrt(variance) / 1000) <= 0.0005 + 1e-12


@HEAVY
@given(st.lists(value_lists, max_size=4), st.randoms(use_true_random=False))
def test_merging_equals_recording_everything_in_one(
    groups: list[list[float]], shuffler: random.Random
) -> None:
    """Merged recorders hold what one recorder fed every value holds, whatever the order
    and grouping of the merges, and whether or not the recorder merged into was read before."""
    expected = contents(recorded([duration for group in groups for duration in group]))
    parts = [recorded(group) for group in groups]
    assert contents(LatencyRecorder.merged(parts)) == expected
    # Other orders and groupings: the slots and sums (the summary is made of them).
    count, encoding, _, total = expected
    shuffled = list(parts)
    shuffler.shuffle(shuffled)
    # Right to left, each merged into a copy of the next one that was read first (a scraped
    # recorder must not keep its stale histogram after a merge).
    nested = LatencyRecorder()
    for part in reversed(parts):
        single = LatencyRecorder.merged([part])
        single.encode()
        single.merge(nested)
        nested = single
    for merged in (LatencyRecorder.merged(shuffled), nested):
        assert (merged.count, merged.encode(), merged.total_seconds()) == (count, encoding, total)


@HEAVY
@given(value_lists, value_lists)
def test_reading_between_records_never_goes_stale(first: list[float], then: list[float]) -> None:
    """A recorder read, fed more values and read again agrees with one fed them all at once."""
    recorder = recorded(first)
    recorder.summary_ms()
    recorder.encode()
    for duration in then:
        recorder.record(duration)
    assert_same(recorder, recorded(first + then))


@HEAVY
@given(value_lists, st.integers(1, 3))
@example([0.001], 4097)
@example([0.5, 2e-6, 70.0], 1366)
def test_record_many_records_what_record_does(durations: list[float], copies: int) -> None:
    """record_many on an array gives the recorder record gives value by value (chunk
    boundaries included)."""
    values = durations * copies
    many = LatencyRecorder()
    many.record_many(np.array(values, dtype=np.float64))
    assert_same(many, recorded(values))
