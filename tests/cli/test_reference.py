"""docs/cli.md is generated from the parser and must match what the code defines."""

from __future__ import annotations

from pathlib import Path

from carebench.cli import build_parser
from carebench.cli.reference import render
from carebench.patterns.base import PatternConfig
from carebench.settings import fields_of

DOCS = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def test_docs_cli_md_is_up_to_date() -> None:
    """The committed reference equals a fresh rendering (run `make docs` after a change)."""
    assert DOCS.read_text(encoding="utf-8") == render(build_parser()), "run `make docs`"


def test_reference_lists_every_setting_with_its_variable_and_default() -> None:
    """Each pattern setting shows up with its flag, its CAREBENCH_* name and its default."""
    text = render(build_parser())

    for item in fields_of(PatternConfig):
        row = next(line for line in text.splitlines() if f"`{item.setting.flag} " in line)
        assert f"`{item.setting.env}`" in row
        assert f"| {item.setting.kind.show(item.default)} |" in row


def test_reference_covers_every_command() -> None:
    """One section per subcommand, including options that are not settings (report's FILE)."""
    text = render(build_parser())

    for command in ("serve", "loadtest", "sweep", "report", "demo"):
        assert f"## carebench {command}" in text
    assert "`--markdown OUT`" in text
