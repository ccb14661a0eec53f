"""Choosing between the Cython build of a request-path module and its Python source."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from carebench.loadgen import callback_loop, compiled, protocol
from carebench.loadgen.compiled import (
    PURE_ENV,
    REQUIRE_ENV,
    CompiledBuildError,
    compiled_or_python,
    source_digest,
)

BUILD_NAME = "carebench.loadgen._compiled_protocol"


@pytest.fixture(autouse=True)
def own_status(monkeypatch: pytest.MonkeyPatch) -> None:
    """What these tests choose must not overwrite what this process really loaded."""
    monkeypatch.setattr(compiled, "_CHOSEN", {})


@pytest.fixture
def fake_build(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """A stand-in for protocol's build, importable under the build's name."""
    monkeypatch.delenv(PURE_ENV, raising=False)
    monkeypatch.delenv(REQUIRE_ENV, raising=False)
    build = ModuleType(BUILD_NAME)
    monkeypatch.setitem(sys.modules, BUILD_NAME, build)
    yield build


def test_a_build_of_todays_source_is_used(fake_build: ModuleType) -> None:
    fake_build.SOURCE_DIGEST = source_digest(Path(protocol.__file__))  # type: ignore[attr-defined]
    assert compiled_or_python(protocol) is fake_build
    assert compiled.status()["protocol"] == "compiled"


def test_a_stale_build_is_not_used(fake_build: ModuleType) -> None:
    fake_build.SOURCE_DIGEST = "built from an older source"  # type: ignore[attr-defined]
    assert compiled_or_python(protocol) is protocol
    assert compiled.status()["protocol"].startswith("python (stale build")


def test_a_build_without_a_digest_is_not_used(fake_build: ModuleType) -> None:
    assert compiled_or_python(protocol) is protocol


def test_pure_python_is_used_when_asked_even_with_a_fresh_build(
    fake_build: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_build.SOURCE_DIGEST = source_digest(Path(protocol.__file__))  # type: ignore[attr-defined]
    monkeypatch.setenv(PURE_ENV, "1")
    monkeypatch.setenv(REQUIRE_ENV, "1")  # asking for Python wins over requiring a build
    assert compiled_or_python(protocol) is protocol
    assert compiled.status()["protocol"] == f"python ({PURE_ENV})"


def test_a_required_build_that_is_stale_is_an_error(
    fake_build: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_build.SOURCE_DIGEST = "built from an older source"  # type: ignore[attr-defined]
    monkeypatch.setenv(REQUIRE_ENV, "1")
    with pytest.raises(CompiledBuildError, match="make compiled"):
        compiled_or_python(protocol)


def test_a_required_build_that_is_missing_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PURE_ENV, raising=False)
    monkeypatch.setenv(REQUIRE_ENV, "1")
    monkeypatch.setitem(sys.modules, "carebench.loadgen._compiled_callback_loop", None)
    with pytest.raises(CompiledBuildError, match="not built"):
        compiled_or_python(callback_loop)


def test_the_digest_covers_the_declarations(tmp_path: Path) -> None:
    source = tmp_path / "mod.py"
    source.write_text("x = 1\n")
    alone = source_digest(source)
    source.with_suffix(".pxd").write_text("cdef class X:\n    pass\n")
    declared = source_digest(source)
    source.with_suffix(".pxd").write_text("cdef class X:\n    cdef public object y\n")
    assert len({alone, declared, source_digest(source)}) == 3
