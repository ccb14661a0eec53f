"""`carebench report`: print (and export) the results saved by `carebench loadtest` or a sweep."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from carebench.errors import ConfigError
from carebench.report.csv_table import sweep_csv
from carebench.report.documents import read_document
from carebench.report.export import write_outputs
from carebench.report.sweep import print_sweep
from carebench.report.terminal import print_report


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "report",
        help="print (and export) the results saved by `carebench loadtest --output`",
        description="Read a saved load-test result file (or a sweep document), print the "
        "comparison, and optionally write it as HTML and CSV.",
    )
    parser.add_argument("file", metavar="FILE", help="a JSON result file or sweep document")
    parser.add_argument("--html", metavar="OUT", help="write a self-contained HTML report to OUT")
    parser.add_argument("--csv", metavar="OUT", help="write a flat CSV table to OUT")
    parser.add_argument(
        "--markdown",
        metavar="OUT",
        help="with a results directory from benchmarks/collect.sh: render BENCHMARKS.md to OUT",
    )
    parser.add_argument("--docs", default="docs", help="where --markdown writes its plots (docs)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if getattr(args, "markdown", None):
        return write_markdown(Path(args.file), Path(args.markdown), Path(args.docs))
    document = read_document(args.file)
    # Not a terminal (a pipe, a CI log): wide enough that the table is not truncated.
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
    if isinstance(document, list):
        print_report(document, console)
        write_outputs(document, csv_path=args.csv, html_path=args.html)
        return 0
    print_sweep(document, console)
    if args.csv:
        Path(args.csv).write_text(sweep_csv(document), encoding="utf-8")
    if args.html:
        from carebench.report.html import write_sweep_html

        write_sweep_html(document, args.html)
    return 0


def write_markdown(directory: Path, out: Path, docs: Path) -> int:
    """Render BENCHMARKS.md from a directory of collected runs."""
    from carebench.report.markdown import render_markdown

    if not directory.is_dir() or not any(directory.glob("loadtest-*.json")):
        raise ConfigError(
            f"{directory}: not a results directory (run benchmarks/collect.sh to make one)"
        )
    docs.mkdir(parents=True, exist_ok=True)
    out.write_text(render_markdown(directory, docs), encoding="utf-8")
    print(f"wrote {out}")
    return 0
