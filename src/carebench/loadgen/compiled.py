"""Cython builds of the load generator's request path, used when present and up to date.

The modules in COMPILED (the connection protocol and the closed loop) run once or more per
request. Cython compiles each one's own source, with its attribute types declared in a
``.pxd`` beside it, into ``_compiled_<name>`` (``tools/build_compiled.py``, run by ``make``).
Compiled, the Python-level work per request goes to C calls and struct fields: the client's
CPU per request against nginx fell from ~7.0 to ~6.5 us, wrk's pace on one core (measured
side by side; BENCHMARKS.md has the figures). The Python modules stay the reference and the
fallback.

A build records a digest of the source it was made from. One that does not match today's
source (an edit since the build) is not used: the Python module is, so a stale build can
never run code that differs from what the tests and the reader see.

Environment: CAREBENCH_PURE_PYTHON=1 always uses the Python modules (the test suite's
coverage run does); CAREBENCH_REQUIRE_COMPILED=1 makes a missing or stale build an error
(the suite's compiled run does, so CI proves the build works).
"""

from __future__ import annotations

import hashlib
import importlib
import os
from pathlib import Path
from types import ModuleType

__all__ = [
    "COMPILED",
    "PREFIX",
    "CompiledBuildError",
    "compiled_or_python",
    "source_digest",
    "status",
]

#: Modules of carebench.loadgen that are built with Cython.
COMPILED = ("protocol", "callback_loop")
PURE_ENV = "CAREBENCH_PURE_PYTHON"
REQUIRE_ENV = "CAREBENCH_REQUIRE_COMPILED"
PREFIX = "_compiled_"

#: What each module's import chose: "compiled", or "python (<why>)".
_CHOSEN: dict[str, str] = {}


class CompiledBuildError(ImportError):
    """CAREBENCH_REQUIRE_COMPILED is set and a build is missing or stale."""


def source_digest(source: Path) -> str:
    """The digest a build of a module must carry: its .py source and its .pxd declarations."""
    digest = hashlib.sha256(source.read_bytes())
    declarations = source.with_suffix(".pxd")
    if declarations.exists():
        digest.update(declarations.read_bytes())
    return digest.hexdigest()


def compiled_or_python(module: ModuleType) -> ModuleType:
    """The compiled build of `module` if there is an up-to-date one, else `module` itself."""
    package, _, name = module.__name__.rpartition(".")
    chosen, why = _choose(module, f"{package}.{PREFIX}{name}")
    _CHOSEN[name] = "compiled" if chosen is not module else f"python ({why})"
    if chosen is module and os.environ.get(REQUIRE_ENV) == "1" and why != PURE_ENV:
        raise CompiledBuildError(
            f"{REQUIRE_ENV}=1 but carebench.loadgen.{name} has no usable build ({why}): "
            "run `make compiled`"
        )
    return chosen


def _choose(module: ModuleType, compiled_name: str) -> tuple[ModuleType, str]:
    if os.environ.get(PURE_ENV) == "1":
        return module, PURE_ENV
    try:
        compiled = importlib.import_module(compiled_name)
    except ImportError:
        return module, "not built"
    if getattr(compiled, "SOURCE_DIGEST", None) != source_digest(Path(module.__file__ or "")):
        return module, "stale build: the source changed since"
    return compiled, ""


def status() -> dict[str, str]:
    """How each module in COMPILED was loaded in this process (for reports)."""
    for importer in ("client", "engine"):  # they choose, as they are imported
        importlib.import_module(f"carebench.loadgen.{importer}")
    return dict(_CHOSEN)
