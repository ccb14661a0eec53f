"""HTML reports: self-contained, escaped, and carrying the summary, winner, charts and notes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from carebench.loadgen.sweep import SweepDocument
from carebench.report import plots
from carebench.report.html import (
    notes,
    render_html,
    render_sweep_html,
    write_html,
    write_sweep_html,
)
from carebench.report.terminal import summary_table
from tests.report.conftest import make_result, sample_results

#: The start of a PNG data URI (base64 of the PNG signature).
IMAGE = 'src="data:image/png;base64,iVBORw0KGgo'
STUB_PNG = b"\x89PNG\r\n\x1a\nstub"


@pytest.fixture(scope="module")
def page() -> str:
    """The report of the three sample patterns, with real charts, rendered once per module."""
    return render_html(sample_results())


@pytest.fixture
def stub_charts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Charts are slow to draw and tested in test_plots: replace them where only text matters."""
    for name in ("latency_spectrum_png", "timeline_png", "outcomes_png", "sweep_png"):
        monkeypatch.setattr(plots, name, lambda *_: STUB_PNG)


def test_report_names_every_pattern(page: str) -> None:
    """Each pattern has a row in the summary table."""
    for result in sample_results():
        assert f"<td>{result['pattern']}</td>" in page


def test_report_states_the_winner(page: str) -> None:
    """The winner line from compare.choose_winner is in the page."""
    assert '<p class="winner">Winner: workerpool: highest goodput' in page


def test_report_embeds_every_chart(page: str) -> None:
    """Spectrum, outcomes and one timeline per pattern are embedded as PNG data URIs."""
    assert page.count(IMAGE) == 2 + len(sample_results())


def test_report_is_self_contained(page: str) -> None:
    """No external stylesheet, script or image: everything is inline."""
    assert "<link" not in page
    assert "<script" not in page
    assert not re.search(r'src="(?!data:)', page)
    assert "<style>" in page


def test_summary_has_the_terminal_columns(page: str) -> None:
    """The HTML summary has the same headers as the terminal's summary table."""
    for column in summary_table(sample_results()).columns:
        assert f"<th>{column.header}</th>" in page


def test_summary_leads_with_what_decides_the_winner(page: str) -> None:
    """The HTML summary starts like the terminal's: goodput, p99 of successes, then attempts."""
    assert "<th>pattern</th><th>goodput/s</th><th>p99 ok ms</th><th>attempts/s</th>" in page
    # optimized: 100 attempts/s of which 10 % were rejected, p99 of successes 70 ms.
    assert (
        '<td>optimized</td><td class="num">90.0</td><td class="num">70.0</td>'
        '<td class="num">100.0</td>'
    ) in page


def test_summary_states_the_load(page: str) -> None:
    """The load applied is stated above the table."""
    assert "<p>load: closed loop, 10 clients re-sending refused requests at once" in page


def test_report_describes_machine_and_config(page: str) -> None:
    """The CPU model, memory and the run's settings are shown."""
    assert "Test CPU 3000 (4 cores)" in page
    assert "8.0 GiB" in page
    assert "<th>concurrency</th><td>10</td>" in page


def test_clean_http_run_has_no_notes(page: str) -> None:
    """Nothing to warn about: no note paragraphs."""
    assert notes(sample_results()) == []
    assert 'class="note"' not in page


@pytest.mark.usefixtures("stub_charts")
def test_differing_settings_are_shown_side_by_side() -> None:
    """A setting that differs between runs gets a column per pattern; shared ones appear once."""
    config = make_result()["config"]
    naive = make_result("naive", config={**config, "concurrency": 10})
    pool = make_result("workerpool", config={**config, "concurrency": 20})
    page = render_html([naive, pool])
    assert "<tr><th></th><th>naive</th><th>workerpool</th></tr>" in page
    assert "<tr><th>concurrency</th><td>10</td><td>20</td></tr>" in page
    assert page.count("<th>seed</th>") == 1


@pytest.mark.usefixtures("stub_charts")
def test_only_a_given_target_is_a_setting() -> None:
    """The random port of a server the load test started is left out; a --target is shown."""
    started = make_result(target="http://127.0.0.1:45453")
    given = make_result(mode="target", target="http://db-api.internal:8000")
    assert "45453" not in render_html([started])
    assert "<th>target</th><td>http://db-api.internal:8000</td>" in render_html([given])


@pytest.mark.usefixtures("stub_charts")
def test_report_has_no_winner_for_a_single_pattern() -> None:
    """One pattern has nothing to win against: no winner line."""
    assert 'class="winner"' not in render_html([make_result()])


@pytest.mark.usefixtures("stub_charts")
def test_hostile_pattern_name_is_escaped() -> None:
    """A pattern name with markup is escaped everywhere, never emitted as a tag."""
    hostile = "<script>alert('x')</script>"
    page = render_html([make_result(hostile), make_result("workerpool", rps=50.0)])
    assert "<script" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page


@pytest.mark.usefixtures("stub_charts")
def test_inprocess_run_is_noted() -> None:
    """An in-process run carries a note that it is not comparable with HTTP runs."""
    page = render_html([make_result(mode="inprocess")])
    assert '<p class="note">Measured in-process' in page


@pytest.mark.usefixtures("stub_charts")
def test_interrupted_run_is_noted() -> None:
    """An interrupted run is named in a note about partial results."""
    page = render_html([make_result("naive"), make_result("workerpool", interrupted=True)])
    assert '<p class="note">workerpool was interrupted: its results are partial.</p>' in page


def test_schedule_not_kept_is_noted() -> None:
    """An open-loop run that fell behind its schedule is named with target and achieved rate."""
    open_loop = {
        "target_rate": 500.0,
        "achieved_rate": 312.5,
        "max_lag_ms": 900.0,
        "schedule_kept": False,
        "uncorrected_latency_ms": {"median": 1.0, "p99": 2.0, "max": 3.0},
        "arrivals": "constant",
    }
    found = notes([make_result("naive", loop="open", open_loop=open_loop)])
    assert len(found) == 1
    assert found[0].startswith("naive: the load generator could not keep the open-loop schedule")
    assert "target 500/s, achieved 312.5/s" in found[0]


@pytest.mark.usefixtures("stub_charts")
def test_write_html_writes_the_rendered_page(tmp_path: Path) -> None:
    """write_html saves render_html's page as UTF-8."""
    out = tmp_path / "report.html"
    write_html(sample_results(), out)
    assert out.read_text(encoding="utf-8") == render_html(sample_results())


def test_sweep_report_has_chart_and_a_table_per_level(tmp_path: Path, sweep: SweepDocument) -> None:
    """The sweep page embeds the sweep chart and has one summary and winner per level."""
    out = tmp_path / "sweep.html"
    write_sweep_html(sweep, out)
    page = out.read_text(encoding="utf-8")
    assert page.count(IMAGE) == 1
    for level in sweep["levels"]:
        assert f"<h2>concurrency = {level}</h2>" in page
    assert page.count('class="winner"') == len(sweep["levels"])
    assert "swept: 10, 50, 100" in page


@pytest.mark.usefixtures("stub_charts")
def test_sweep_notes_name_the_level(sweep: SweepDocument) -> None:
    """A note about a sweep result says at which level it happened."""
    sweep["results"][1]["interrupted"] = True
    assert "naive at level 50 was interrupted" in render_sweep_html(sweep)
