"""Reading saved results: the array `carebench loadtest --output` writes, or a sweep document.

Every result is checked against `LoadTestResult` itself (msgspec validates the TypedDict), so
what the reports read is what the type says, and the check cannot drift from the producer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import msgspec

from carebench.errors import ConfigError
from carebench.loadgen.results import SCHEMA_VERSION, LoadTestResult
from carebench.loadgen.sweep import AXES, SWEEP_SCHEMA_VERSION, SweepDocument

HINT = "expected the JSON written by `carebench loadtest --output FILE` or `carebench sweep`"

Document = list[LoadTestResult] | SweepDocument


def read_document(path: str | Path) -> Document:
    """The results array or sweep document in `path`; ConfigError (naming the file) if not."""
    data = _read_json(path)
    if isinstance(data, list):
        return check_results(path, data)
    if isinstance(data, dict) and data.get("kind") == "sweep":
        return check_sweep(path, data)
    raise ConfigError(f"{path}: a JSON {_json_type(data)} is not a result file; {HINT}")


def read_results(path: str | Path) -> list[LoadTestResult]:
    """The results array in `path` (not a sweep)."""
    data = _read_json(path)
    if not isinstance(data, list):
        raise ConfigError(f"{path}: a JSON {_json_type(data)} is not a results array; {HINT}")
    return check_results(path, data)


def read_sweep(path: str | Path) -> SweepDocument:
    """The sweep document in `path`."""
    data = _read_json(path)
    if not isinstance(data, dict) or data.get("kind") != "sweep":
        raise ConfigError(f"{path}: not a sweep document; {HINT}")
    return check_sweep(path, data)


def _read_json(path: str | Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text; {HINT}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not JSON ({exc.msg}, line {exc.lineno}); {HINT}") from None


def check_results(
    path: str | Path, results: list[Any], in_sweep: bool = False
) -> list[LoadTestResult]:
    """Every result has the current schema_version and the shape of LoadTestResult."""
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
        if in_sweep and not _is_number(result.get("level")):
            raise ConfigError(f"{where} has no numeric 'level'; every sweep result needs one")
        try:
            msgspec.convert(result, LoadTestResult)
        except msgspec.ValidationError as error:
            raise ConfigError(f"{where}: {error}; {HINT}") from None
    # Checked above; the documents are returned as read (ints stay ints in the CSV).
    return cast(list[LoadTestResult], results)


def check_sweep(path: str | Path, sweep: dict[str, Any]) -> SweepDocument:
    """A sweep document: its version, a known axis, numeric levels, and valid results."""
    version = sweep.get("schema_version")
    if version != SWEEP_SCHEMA_VERSION:
        raise ConfigError(
            f"{path}: sweep schema_version {version!r}; this carebench reads {SWEEP_SCHEMA_VERSION}"
        )
    if sweep.get("axis") not in AXES:
        raise ConfigError(
            f"{path}: sweep axis {sweep.get('axis')!r} must be one of {', '.join(AXES)}"
        )
    levels = sweep.get("levels")
    if not isinstance(levels, list) or not levels or not all(map(_is_number, levels)):
        raise ConfigError(f"{path}: sweep 'levels' must be a non-empty list of numbers")
    results = sweep.get("results")
    if not isinstance(results, list):
        raise ConfigError(f"{path}: sweep 'results' must be a list of results")
    check_results(path, results, in_sweep=True)
    try:
        msgspec.convert({**sweep, "results": []}, SweepDocument)
    except msgspec.ValidationError as error:
        raise ConfigError(f"{path}: sweep: {error}; {HINT}") from None
    return cast(SweepDocument, sweep)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")
