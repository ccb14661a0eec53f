"""`carebench report`: print (and export) the results saved by `carebench loadtest` or a sweep."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from carebench.errors import ConfigError
from carebench.loadgen.results import OUTCOMES
from carebench.loadgen.runner import SCHEMA_VERSION
from carebench.loadgen.sweep import AXES as SWEEP_AXES
from carebench.loadgen.sweep import SWEEP_SCHEMA_VERSION
from carebench.report.export import write_outputs
from carebench.report.sweep import print_sweep, sweep_csv
from carebench.report.terminal import print_report

#: The sweep document's own version (it wraps results of version SCHEMA_VERSION).

#: What the terminal, CSV and HTML reports read from every result, and the kind of value.
RESULT_KEYS: dict[str, type | tuple[type, ...]] = {
    "pattern": str,
    "mode": str,
    "loop": str,
    "total_requests": int,
    "success_requests": int,
    "error_requests": int,
    "rejected_requests": int,
    "duration_seconds": (int, float),
    "requests_per_second": (int, float),
    "goodput_per_second": (int, float),
    "error_rate_percent": (int, float),
    "rejection_rate_percent": (int, float),
    "latency_ms": dict,
    "success_latency_ms": dict,
    "rejection_latency_ms": dict,
    "outcomes": dict,
}
LATENCY_KEYS = ("min", "mean", "median", "p90", "p95", "p99", "p99_9", "max")
HINT = "expected the JSON written by `carebench loadtest --output FILE` or `carebench sweep`"

Document = list[dict[str, Any]] | dict[str, Any]


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
    document = load_document(args.file)
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


def load_document(path: str) -> Document:
    """The results array or sweep document in `path`; ConfigError (naming the file) if not."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text; {HINT}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not JSON ({exc.msg}, line {exc.lineno}); {HINT}") from None
    if isinstance(data, list):
        check_results(path, data)
        return data
    if isinstance(data, dict) and data.get("kind") == "sweep":
        check_sweep(path, data)
        return data
    raise ConfigError(f"{path}: a JSON {_json_type(data)} is not a result file; {HINT}")


def check_results(path: str, results: list[Any], in_sweep: bool = False) -> None:
    """Every result has the current schema_version and the keys the reports read."""
    if not results:
        raise ConfigError(f"{path}: holds no results; {HINT}")
    for index, result in enumerate(results, start=1):
        where = f"{path}: result {index}"
        if not isinstance(result, dict):
            raise ConfigError(f"{where} is a JSON {_json_type(result)}, not an object; {HINT}")
        version = result.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ConfigError(
                f"{where} has schema_version {version!r}; this carebench reads {SCHEMA_VERSION}"
            )
        _check_keys(where, result)
        if in_sweep and not _is_number(result.get("level")):
            raise ConfigError(f"{where} has no numeric 'level'; every sweep result needs one")


def _check_keys(where: str, result: dict[str, Any]) -> None:
    for key, kind in RESULT_KEYS.items():
        if not isinstance(result.get(key), kind):
            raise ConfigError(f"{where}: '{key}' is missing or not a {_kind_name(kind)}; {HINT}")
    for key in ("latency_ms", "success_latency_ms", "rejection_latency_ms"):
        missing = [name for name in LATENCY_KEYS if not _is_number(result[key].get(name))]
        if missing:
            raise ConfigError(f"{where}: '{key}' lacks {', '.join(missing)}")
    missing = [name for name in OUTCOMES if not isinstance(result["outcomes"].get(name), int)]
    if missing:
        raise ConfigError(f"{where}: 'outcomes' lacks {', '.join(missing)}")


def check_sweep(path: str, sweep: dict[str, Any]) -> None:
    """A sweep document: its version, a known axis, numeric levels, and valid results."""
    version = sweep.get("schema_version")
    if version != SWEEP_SCHEMA_VERSION:
        raise ConfigError(
            f"{path}: sweep schema_version {version!r}; this carebench reads {SWEEP_SCHEMA_VERSION}"
        )
    if sweep.get("axis") not in SWEEP_AXES:
        raise ConfigError(
            f"{path}: sweep axis {sweep.get('axis')!r} must be one of {', '.join(SWEEP_AXES)}"
        )
    levels = sweep.get("levels")
    if not isinstance(levels, list) or not levels or not all(map(_is_number, levels)):
        raise ConfigError(f"{path}: sweep 'levels' must be a non-empty list of numbers")
    results = sweep.get("results")
    if not isinstance(results, list):
        raise ConfigError(f"{path}: sweep 'results' must be a list of results")
    check_results(path, results, in_sweep=True)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {"str": "string", "int": "integer", "float": "number", "dict": "object"}
    return " or ".join(names.get(k.__name__, k.__name__) for k in kinds)
