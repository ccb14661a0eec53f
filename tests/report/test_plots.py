"""Charts: valid PNGs of the expected size that change with the data, without warnings."""

from __future__ import annotations

import struct

import pytest

from carebench.loadgen.results import LoadTestResult
from carebench.loadgen.sweep import SweepDocument
from carebench.report import plots
from carebench.report import sweep as sweep_analysis
from tests.report.conftest import SWEEP_CURVES, make_result, make_sweep

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(png: bytes) -> tuple[int, int]:
    """Width and height from the PNG's IHDR chunk."""
    assert png.startswith(PNG_SIGNATURE)
    assert png[12:16] == b"IHDR"
    width, height = struct.unpack(">II", png[16:24])
    return width, height


def test_spectrum_is_a_png_of_the_chart_size(results: list[LoadTestResult]) -> None:
    """The spectrum is a PNG of 8 x 4.5 inches at the report's DPI."""
    png = plots.latency_spectrum_png(results)
    assert png_size(png) == (8 * plots.DPI, int(4.5 * plots.DPI))
    assert len(png) > 5_000


def test_spectrum_draws_every_pattern(results: list[LoadTestResult]) -> None:
    """Adding a pattern changes the spectrum image."""
    assert plots.latency_spectrum_png(results) != plots.latency_spectrum_png(results[:1])


def test_spectrum_survives_zero_latencies_and_no_data() -> None:
    """Zero latencies are clamped for the log axes; results without a spectrum still render."""
    zero = make_result("zero", p99=0.0)
    empty = make_result("empty", latency_spectrum=[])
    assert png_size(plots.latency_spectrum_png([zero]))[0] == 8 * plots.DPI
    assert plots.latency_spectrum_png([empty]).startswith(PNG_SIGNATURE)


def test_timeline_is_a_tall_png(results: list[LoadTestResult]) -> None:
    """The timeline stacks three panels in an 8 x 7 inch PNG."""
    assert png_size(plots.timeline_png(results[0])) == (8 * plots.DPI, 7 * plots.DPI)


def test_timeline_draws_server_samples() -> None:
    """The server panel reflects server_samples (the image changes without them)."""
    with_samples = make_result()
    without = make_result(server_samples=[])
    assert plots.timeline_png(with_samples) != plots.timeline_png(without)


def test_timeline_tolerates_empty_intervals() -> None:
    """An interval with no completions (p50/p99 None) and zero latencies render without error."""
    result = make_result(p99=0.0)
    empty = result["timeline"][1]
    empty["completed"], empty["p50_ms"], empty["p99_ms"] = 0, None, None
    assert plots.timeline_png(result).startswith(PNG_SIGNATURE)


def test_outcomes_reflect_the_outcome_mix() -> None:
    """A pattern with rejections draws a different bar than one with only successes."""
    clean = [make_result("a"), make_result("b")]
    mixed = [make_result("a"), make_result("b", outcomes={"success": 100, "rejected": 100})]
    assert png_size(plots.outcomes_png(clean))[0] == 8 * plots.DPI
    assert plots.outcomes_png(clean) != plots.outcomes_png(mixed)


def test_pattern_names_are_not_mathtext() -> None:
    """A `$` in a pattern name is drawn literally instead of failing as mathtext."""
    odd = make_result("cost $\\frac{$ <b>", p99=10.0)
    for png in (
        plots.latency_spectrum_png([odd]),
        plots.timeline_png(odd),
        plots.outcomes_png([odd]),
    ):
        assert png.startswith(PNG_SIGNATURE)


def test_sweep_is_a_wide_png(sweep: SweepDocument) -> None:
    """The sweep chart has three panels side by side (15 x 5 inches)."""
    assert png_size(plots.sweep_png(sweep)) == (15 * plots.DPI, 5 * plots.DPI)


def test_sweep_chart_changes_with_the_data(sweep: SweepDocument) -> None:
    """A different p99 curve gives a different sweep chart."""
    flatter = make_sweep({**SWEEP_CURVES, "naive": [(50.0, 10.0), (90.0, 11.0), (70.0, 12.0)]})
    assert plots.sweep_png(sweep) != plots.sweep_png(flatter)


def test_sweep_series_groups_by_pattern_and_sorts_by_level(sweep: SweepDocument) -> None:
    """Results come back per pattern in first-seen order, each in increasing level."""
    sweep["results"].reverse()
    series = sweep_analysis.sweep_series(sweep)
    assert list(series) == ["workerpool", "naive"]
    assert [r["level"] for r in series["naive"]] == [10, 50, 100]


def test_goodput_peak_is_the_highest_goodput(sweep: SweepDocument) -> None:
    """The peak is the level with the most successful req/s; a tie goes to the lower level."""
    series = sweep_analysis.sweep_series(sweep)
    peaks = {name: sweep_analysis.goodput_peak(points) for name, points in series.items()}
    assert {name: peak["level"] for name, peak in peaks.items() if peak} == {
        "naive": 50,
        "workerpool": 50,
    }
    assert sweep_analysis.goodput_peak([]) is None


def test_a_rejection_storm_is_not_a_peak() -> None:
    """Thousands of fast rejections per second do not beat fewer successful responses."""
    calm = make_result(rps=100.0, level=10)
    storm = make_result(rps=20_000.0, level=100, outcomes={"success": 1, "rejected": 199})
    assert sweep_analysis.goodput_peak([calm, storm]) is calm


@pytest.mark.parametrize(
    ("p99s", "knee"),
    [
        ((10.0, 15.0, 40.0), 100),
        ((10.0, 21.0, 40.0), 50),
        ((10.0, 20.0, 20.0), None),
        ((0.0, 5.0, 9.0), None),
    ],
)
def test_p99_knee_is_the_first_level_past_twice_the_lowest(
    p99s: tuple[float, ...], knee: int | None
) -> None:
    """The knee is the first level whose p99 is more than 2x the lowest level's (strictly)."""
    points = [
        make_result(p99=p99, level=level) for level, p99 in zip((10, 50, 100), p99s, strict=True)
    ]
    found = sweep_analysis.p99_knee(points)
    assert (found["level"] if found else None) == knee


def test_sweep_renders_one_pattern_with_log_spread_levels() -> None:
    """A single pattern over levels 1..256 (a log-scaled axis) still renders."""
    levels = [1, 4, 16, 64, 256]
    doc = make_sweep({"naive": [(10.0 * n, 5.0 * n) for n in range(1, 6)]}, levels=levels)
    assert png_size(plots.sweep_png(doc))[0] == 15 * plots.DPI
