"""LatencyRecorder's histograms are freed by reference counting, not left to the collector."""

from __future__ import annotations

import gc
import weakref

from carebench.metrics.latency import LatencyRecorder


def test_dropped_recorders_free_their_histograms_without_the_cyclic_collector() -> None:
    """A recorder's HdrHistogram (and a merged one's, and a stale one's replaced on a read) is
    freed as soon as it is dropped: hdrh's histogram-encoder cycle would otherwise hold its
    counts array until a collection, which a tuned server runs rarely."""
    gc.disable()
    try:
        recorder = LatencyRecorder()
        built_empty = weakref.ref(recorder._hdr)
        recorder.record(0.010)
        assert recorder.summary_ms()["max"] > 0  # rebuilt: the empty one is dropped
        assert built_empty() is None
        merged = LatencyRecorder.merged([recorder, recorder])
        assert merged.encode().startswith("HISTF")
        histograms = [weakref.ref(recorder._hdr), weakref.ref(merged._hdr)]
        del recorder, merged
        assert [ref() for ref in histograms] == [None, None]
    finally:
        gc.enable()
