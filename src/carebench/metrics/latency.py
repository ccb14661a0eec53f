"""Latency recording in an HdrHistogram: bounded memory, 3 significant digits, 1 us to 60 s."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 60_000_000
SIGNIFICANT_FIGURES = 3
#: The percentiles every summary reports.
SUMMARY_PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)


class LatencyRecorder:
    """Records durations (seconds) into an HdrHistogram and summarises them in milliseconds."""

    __slots__ = ("_histogram",)

    def __init__(self) -> None:
        self._histogram = HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)

    def record(self, seconds: float) -> None:
        """Record one duration; values outside the trackable range are clamped."""
        micros = int(seconds * 1_000_000)
        self._histogram.record_value(min(max(micros, LOWEST_US), HIGHEST_US))

    def record_corrected(self, seconds: float, expected_interval: float) -> None:
        """Record with HdrHistogram's coordinated-omission back-fill."""
        micros = min(max(int(seconds * 1_000_000), LOWEST_US), HIGHEST_US)
        self._histogram.record_corrected_value(micros, int(expected_interval * 1_000_000))

    @property
    def count(self) -> int:
        return int(self._histogram.get_total_count())

    def merge(self, other: LatencyRecorder) -> None:
        """Add every value recorded by `other` to this recorder."""
        # hdrh's add() takes an empty histogram's placeholder minimum (0) as a real value.
        if other.count:
            self._histogram.add(other._histogram)

    @classmethod
    def merged(cls, recorders: Iterable[LatencyRecorder]) -> LatencyRecorder:
        """A new recorder holding the values of all `recorders`."""
        total = cls()
        for recorder in recorders:
            total.merge(recorder)
        return total

    def percentile_ms(self, percentile: float) -> float:
        return float(self._histogram.get_value_at_percentile(percentile)) / 1000.0

    def summary_ms(self) -> dict[str, float]:
        """min, mean, median, p90, p95, p99, p99.9 and max in milliseconds (zeros when empty)."""
        h = self._histogram
        if self.count == 0:
            keys = ("min", "mean", "median", "p90", "p95", "p99", "p99_9", "max", "stddev")
            return dict.fromkeys(keys, 0.0)
        return {
            "min": h.get_min_value() / 1000.0,
            "mean": round(h.get_mean_value() / 1000.0, 3),
            "median": self.percentile_ms(50.0),
            "p90": self.percentile_ms(90.0),
            "p95": self.percentile_ms(95.0),
            "p99": self.percentile_ms(99.0),
            "p99_9": self.percentile_ms(99.9),
            "max": h.get_max_value() / 1000.0,
            "stddev": round(h.get_stddev() / 1000.0, 3),
        }

    def spectrum_ms(self, ticks_per_half_distance: int = 5) -> list[dict[str, float]]:
        """The full percentile spectrum (HdrHistogram's percentile iterator), in milliseconds."""
        if self.count == 0:
            return []
        return [
            {
                "percentile": round(float(item.percentile_level_iterated_to), 6),
                "value_ms": item.value_iterated_to / 1000.0,
                "count": int(item.total_count_to_this_value),
            }
            for item in self._histogram.get_percentile_iterator(ticks_per_half_distance)
        ]

    def cumulative_counts(self, bounds_seconds: Iterable[float]) -> Iterator[tuple[float, int]]:
        """(bound, count of values <= bound) for ascending bounds: Prometheus buckets."""
        recorded = [
            (item.value_iterated_to, item.count_at_value_iterated_to)
            for item in self._histogram.get_recorded_iterator()
        ]
        index, running = 0, 0
        for bound in bounds_seconds:
            limit = bound * 1_000_000
            while index < len(recorded) and recorded[index][0] <= limit:
                running += recorded[index][1]
                index += 1
            yield bound, running

    def total_seconds(self) -> float:
        """Approximate sum of recorded values (mean x count), for Prometheus `_sum`."""
        if self.count == 0:
            return 0.0
        return float(self._histogram.get_mean_value()) * self.count / 1_000_000

    def encode(self) -> str:
        """HdrHistogram's compressed base64 encoding, loadable by any HdrHistogram library."""
        encoded: Any = self._histogram.encode()
        return encoded.decode() if isinstance(encoded, bytes) else str(encoded)
