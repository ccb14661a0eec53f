"""Saved documents are read back only when they have the shape of their type."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from carebench.errors import ConfigError
from carebench.loadgen.sweep import SweepDocument
from carebench.report.documents import read_document, read_results, read_sweep
from tests.report.conftest import make_result


def saved(tmp_path: Path, document: Any) -> Path:
    path = tmp_path / "saved.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def test_results_come_back_as_written(tmp_path: Path) -> None:
    """A valid results array is returned unchanged (whole numbers stay whole)."""
    results = [make_result("a"), make_result("b", level=10)]
    assert read_results(saved(tmp_path, results)) == results
    assert read_document(saved(tmp_path, results)) == results


def test_a_sweep_comes_back_as_written(tmp_path: Path, sweep: SweepDocument) -> None:
    """A valid sweep document is returned unchanged, as a sweep."""
    assert read_sweep(saved(tmp_path, sweep)) == sweep
    assert read_document(saved(tmp_path, sweep)) == sweep


def test_each_reader_refuses_the_other_kind(tmp_path: Path, sweep: SweepDocument) -> None:
    """read_results wants an array, read_sweep a sweep document; both name the file."""
    sweep_path, results_path = saved(tmp_path, sweep), tmp_path / "results.json"
    results_path.write_text(json.dumps([make_result()]), encoding="utf-8")
    with pytest.raises(ConfigError, match=f"^{sweep_path}: a JSON object is not a results array"):
        read_results(sweep_path)
    with pytest.raises(ConfigError, match=f"^{results_path}: not a sweep document"):
        read_sweep(results_path)


def test_a_nested_field_of_the_wrong_type_is_named(tmp_path: Path) -> None:
    """The check reaches into nested shapes and says where the problem is."""
    result = make_result()
    broken = {**result, "config": {**result["config"], "honor_retry_after": "yes"}}
    with pytest.raises(ConfigError, match=r"result 1: Expected `bool`, got `str` - at `\$.config"):
        read_results(saved(tmp_path, [broken]))
