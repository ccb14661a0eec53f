"""Build the Cython versions of carebench.loadgen's request path (see carebench.loadgen.compiled).

Each module in COMPILED is copied, with its .pxd, to a scratch package as `_compiled_<name>`,
stamped with the digest of its source, translated by Cython and compiled by the C compiler
into src/carebench/loadgen/. Usage: python tools/build_compiled.py [--quiet]. Exit 1 (with the
compiler's message) when a build fails; nothing half-built is left in the source tree.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "carebench" / "loadgen"
sys.path.insert(0, str(ROOT / "src"))

from carebench.loadgen.compiled import COMPILED, PREFIX, source_digest  # noqa: E402

# Types come from the .pxd files only: annotations are for mypy (Cython 3.3 reads some as C
# types and then rejects the .pxd declarations as incompatible).
DIRECTIVES = {"language_level": "3", "embedsignature": False, "annotation_typing": False}


def build(name: str, scratch: Path, quiet: bool) -> Path:
    from Cython.Build import cythonize

    package = scratch / "carebench" / "loadgen"
    package.mkdir(parents=True, exist_ok=True)
    for init in (scratch / "carebench" / "__init__.py", package / "__init__.py"):
        init.touch()
    source = PACKAGE / f"{name}.py"
    copy = package / f"{PREFIX}{name}.py"
    stamp = f'\nSOURCE_DIGEST = "{source_digest(source)}"\n'
    copy.write_text(source.read_text() + stamp)
    shutil.copy(source.with_suffix(".pxd"), copy.with_suffix(".pxd"))
    [extension] = cythonize(  # type: ignore[no-untyped-call]
        [str(copy)], compiler_directives=DIRECTIVES, quiet=quiet, force=True
    )
    c_file = Path(extension.sources[0])
    target = scratch / f"{PREFIX}{name}{sysconfig.get_config_var('EXT_SUFFIX')}"
    compiler = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")
    command = [
        *compiler,
        "-shared",
        "-fPIC",
        "-O2",
        "-DNDEBUG",
        "-fno-strict-aliasing",
        f"-I{sysconfig.get_paths()['include']}",
        str(c_file),
        "-o",
        str(target),
    ]
    subprocess.run(command, check=True)
    return target


def main(argv: list[str]) -> int:
    quiet = "--quiet" in argv
    with tempfile.TemporaryDirectory(prefix="carebench-build-") as scratch:
        try:
            built = [build(name, Path(scratch), quiet) for name in COMPILED]
        except Exception as exc:  # Cython's CompileError, the compiler's exit, a missing tool
            print(f"error: building the compiled load generator failed: {exc}", file=sys.stderr)
            return 1
        for path in built:
            stale = PACKAGE.glob(f"{path.name.split('.')[0]}.*")
            for old in stale:
                old.unlink()
            shutil.move(str(path), PACKAGE / path.name)
            if not quiet:
                print(f"built {PACKAGE / path.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
