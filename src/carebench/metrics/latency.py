"""Latency recording in an HdrHistogram: bounded memory, 3 significant digits, 1 us to 60 s."""

from __future__ import annotations

import math
import operator
import weakref
from collections.abc import Iterable
from typing import Any, TypedDict

import numpy as np
import numpy.typing as npt
from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 60_000_000
SIGNIFICANT_FIGURES = 3
#: The percentiles every summary reports.
SUMMARY_PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)
#: Values per vectorised step of `record_many`: their squares sum below 2**64 (uint64).
_MANY_CHUNK = 4096


class LatencySummary(TypedDict):
    """A latency distribution in milliseconds (all zeros when nothing was recorded)."""

    min: float
    mean: float
    median: float
    p90: float
    p95: float
    p99: float
    p99_9: float
    max: float
    stddev: float


EMPTY_SUMMARY = LatencySummary(
    min=0.0, mean=0.0, median=0.0, p90=0.0, p95=0.0, p99=0.0, p99_9=0.0, max=0.0, stddev=0.0
)


class LatencyState(TypedDict):
    """Everything a LatencyRecorder holds, as JSON-safe values: another process (a Locust
    worker) sends it, `LatencyRecorder.from_state` rebuilds the same recorder to merge."""

    significant_figures: int
    #: The non-zero slots of the counts array: their indices and counts, in index order.
    indices: list[int]
    counts: list[int]
    #: Decimal strings: the sums are Python ints of any size (the sum of squares passes
    #: 2**64, JSON's and msgpack's limit, after ~5000 one-minute values).
    sum_us: str
    sum_squares_us: str


class SpectrumPoint(TypedDict):
    """One step of HdrHistogram's percentile spectrum: `count` values are <= `value_ms`."""

    percentile: float
    value_ms: float
    count: int


def _histogram(significant_figures: int) -> HdrHistogram:
    """An empty HdrHistogram that reference counting alone frees.

    hdrh's histogram and its encoder point at each other, so a dropped histogram (one per
    recorder, one more per rebuild: several per GET /metrics) waited for the cyclic garbage
    collector with its counts array (~136 KiB at 3 digits), and a server's collector runs
    rarely (server/gc_tuning.py): /metrics read 6 times a second grew the server's RSS
    ~1.6 MiB/s without levelling (the soak part of the reliability suite). The encoder's
    reference back to its histogram is made weak; it is only read while the histogram lives.
    """
    histogram = HdrHistogram(LOWEST_US, HIGHEST_US, significant_figures)
    histogram.encoder.histogram = weakref.proxy(histogram)
    return histogram


class LatencyRecorder:
    """Records durations (seconds) into an HdrHistogram and summarises them in milliseconds.

    Recording increments a plain list of counts laid out exactly as HdrHistogram's (same
    index for every value); the HdrHistogram itself is built from those counts only when it
    is read (a summary, a scrape). hdrh's `record_value` is pure Python (~0.9 us); the index
    arithmetic inlined here is ~4x cheaper, and it runs on every request. The histogram built
    from the counts is the one recording the values directly would have produced: each
    count is recorded as its slot's lowest equivalent value, and everything hdrh reports
    (percentiles, min, max, encoding) is per slot.
    """

    # hdrh computes mean and stddev by walking all ~17k slots in pure Python (~0.1 s each),
    # which would stall the event loop on every /metrics scrape; running sums cost nothing.
    __slots__ = (
        "_built",
        "_count",
        "_counts",
        "_histogram",
        "_mask",
        "_offset",
        "_shift",
        "_significant_figures",
        "_sum",
        "_sum_squares",
    )

    def __init__(self, significant_figures: int = SIGNIFICANT_FIGURES) -> None:
        self._significant_figures = significant_figures
        self._histogram = _histogram(significant_figures)
        h = self._histogram
        self._counts = [0] * h.counts_len
        #: index(v) = ((b + 1) << half_magnitude) + (v >> b) - half_count, where
        #: b = bit_length(v | mask) - (half_magnitude + 1) (unit magnitude 0: LOWEST_US is 1).
        self._mask: int = h.sub_bucket_mask
        self._shift: int = h.sub_bucket_half_count_magnitude + 1
        self._offset: int = h.sub_bucket_half_count
        self._count = 0
        #: How many of the counts the histogram already holds (it is rebuilt when stale).
        self._built = 0
        self._sum = 0
        self._sum_squares = 0

    def record(self, seconds: float) -> None:
        """Record one duration; values outside the trackable range are clamped."""
        micros = int(seconds * 1_000_000)
        if micros < LOWEST_US:
            micros = LOWEST_US
        elif micros > HIGHEST_US:
            micros = HIGHEST_US
        bucket = (micros | self._mask).bit_length() - self._shift
        self._counts[(bucket << (self._shift - 1)) + (micros >> bucket)] += 1
        self._count += 1
        self._sum += micros
        self._sum_squares += micros * micros

    def record_many(self, seconds: npt.NDArray[np.float64]) -> None:
        """Record every duration of `seconds` at once: the same counts as `record` on each.

        For a caller that buffers durations (the load generator, ~100k per second per core):
        the index arithmetic runs vectorised, so a value costs a few nanoseconds instead of
        a Python call. bit_length is taken from frexp's exponent, exact below 2**53.
        """
        for start in range(0, len(seconds), _MANY_CHUNK):
            self._record_chunk(seconds[start : start + _MANY_CHUNK])

    def _record_chunk(self, seconds: npt.NDArray[np.float64]) -> None:
        micros = np.clip((seconds * 1_000_000).astype(np.int64), LOWEST_US, HIGHEST_US)
        buckets = np.frexp((micros | self._mask).astype(np.float64))[1] - self._shift
        indices = (buckets << (self._shift - 1)) + (micros >> buckets)
        per_index = np.bincount(indices)
        used = np.flatnonzero(per_index)
        counts = self._counts
        for index, count in zip(used.tolist(), per_index[used].tolist(), strict=True):
            counts[index] += count
        self._count += len(micros)
        self._sum += int(micros.sum())
        # Unsigned: a chunk's squares sum to at most _MANY_CHUNK * HIGHEST_US**2 < 2**64.
        unsigned = micros.astype(np.uint64)
        self._sum_squares += int((unsigned * unsigned).sum())

    @property
    def _hdr(self) -> HdrHistogram:
        """The HdrHistogram of everything recorded so far (rebuilt from the counts if stale)."""
        if self._built != self._count:
            h = _histogram(self._significant_figures)
            for index, count in enumerate(self._counts):
                if count:
                    h.record_value(self._slot_value(index), count)
            self._histogram, self._built = h, self._count
        return self._histogram

    def _slot_value(self, index: int) -> int:
        """The lowest value whose counts index is `index` (inverse of the index in record)."""
        half_magnitude = self._shift - 1
        bucket = (index >> half_magnitude) - 1
        sub_bucket = (index & (self._offset - 1)) + self._offset
        if bucket < 0:
            sub_bucket -= self._offset
            bucket = 0
        return sub_bucket << bucket

    def record_corrected(self, seconds: float, expected_interval: float) -> None:
        """Record with coordinated-omission back-fill, as HdrHistogram's recordCorrectedValue.

        A response that took longer than the expected interval between requests stands for
        the requests that would have been sent meanwhile: values `seconds - k * interval`
        are recorded too, down to the interval.
        """
        self.record(seconds)
        if expected_interval <= 0:
            return
        missing = seconds - expected_interval
        while missing >= expected_interval:
            self.record(missing)
            missing -= expected_interval

    @property
    def count(self) -> int:
        return self._count

    def merge(self, other: LatencyRecorder) -> None:
        """Add every value recorded by `other` to this recorder."""
        if other._significant_figures != self._significant_figures:
            raise ValueError("cannot merge recorders of different precision")
        if other.count:
            self._counts = list(map(operator.add, self._counts, other._counts))
            self._count += other._count
            self._sum += other._sum
            self._sum_squares += other._sum_squares

    @classmethod
    def merged(cls, recorders: Iterable[LatencyRecorder]) -> LatencyRecorder:
        """A new recorder holding the values of all `recorders`."""
        total = cls()
        for recorder in recorders:
            total.merge(recorder)
        return total

    def to_state(self) -> LatencyState:
        """The recorder's counts and sums; `from_state` rebuilds an equal recorder."""
        used = [index for index, count in enumerate(self._counts) if count]
        return {
            "significant_figures": self._significant_figures,
            "indices": used,
            "counts": [self._counts[index] for index in used],
            "sum_us": str(self._sum),
            "sum_squares_us": str(self._sum_squares),
        }

    @classmethod
    def from_state(cls, state: LatencyState) -> LatencyRecorder:
        """A recorder holding what `state` describes; ValueError if it cannot be one."""
        recorder = cls(state["significant_figures"])
        slots = len(recorder._counts)
        if len(state["indices"]) != len(state["counts"]):
            raise ValueError("latency state: indices and counts differ in length")
        for index, count in zip(state["indices"], state["counts"], strict=True):
            if not 0 <= index < slots or count < 0:
                raise ValueError(f"latency state: slot {index} with count {count} is invalid")
            recorder._counts[index] += count
        recorder._count = sum(state["counts"])
        recorder._sum = int(state["sum_us"])
        recorder._sum_squares = int(state["sum_squares_us"])
        return recorder

    def percentile_ms(self, percentile: float) -> float:
        return float(self._hdr.get_value_at_percentile(percentile)) / 1000.0

    def summary_ms(self) -> LatencySummary:
        """min, mean, median, p90, p95, p99, p99.9 and max in milliseconds (zeros when empty)."""
        if self.count == 0:
            return EMPTY_SUMMARY.copy()
        h = self._hdr
        # One pass over the counts for all percentiles (hdrh walks them in Python).
        values = h.get_percentile_to_value_dict(list(SUMMARY_PERCENTILES))
        p50, p90, p95, p99, p999 = (values[p] / 1000.0 for p in SUMMARY_PERCENTILES)
        return {
            "min": h.get_min_value() / 1000.0,
            "mean": round(self._mean_us() / 1000.0, 3),
            "median": p50,
            "p90": p90,
            "p95": p95,
            "p99": p99,
            "p99_9": p999,
            "max": h.get_max_value() / 1000.0,
            "stddev": round(self._stddev_us() / 1000.0, 3),
        }

    def _mean_us(self) -> float:
        return self._sum / self.count if self.count else 0.0

    def _stddev_us(self) -> float:
        if not self.count:
            return 0.0
        # In integers, exactly: E[x^2] - mean^2 in floats cancels to noise when the values
        # are large and close (three values around 60 s read 0.001 ms instead of 0.000).
        n = self.count
        return math.sqrt((n * self._sum_squares - self._sum * self._sum) / (n * n))

    def spectrum_ms(self, ticks_per_half_distance: int = 5) -> list[SpectrumPoint]:
        """The full percentile spectrum (HdrHistogram's percentile iterator), in milliseconds."""
        if self.count == 0:
            return []
        return [
            {
                "percentile": round(float(item.percentile_level_iterated_to), 6),
                "value_ms": item.value_iterated_to / 1000.0,
                "count": int(item.total_count_to_this_value),
            }
            for item in self._hdr.get_percentile_iterator(ticks_per_half_distance)
        ]

    def total_seconds(self) -> float:
        """Sum of recorded values (as clamped to whole microseconds), for Prometheus `_sum`."""
        return self._sum / 1_000_000

    def encode(self) -> str:
        """HdrHistogram's compressed base64 encoding, loadable by any HdrHistogram library."""
        encoded: Any = self._hdr.encode()
        return encoded.decode() if isinstance(encoded, bytes) else str(encoded)
