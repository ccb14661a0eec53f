"""A Ctrl-C at any point of the `carebench` command, even while it imports: one line on
stderr, exit status 130, no traceback."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from carebench import cli, launcher

#: Puts a SIGINT, the real signal, on the process the moment `carebench.cli` starts to be
#: imported: a Ctrl-C in the first ~0.3 s of the command, at a point fixed in advance. Python's
#: own handler is put back first, as a terminal has it: a test run started in the background
#: (`cmd &` in a script) inherits SIGINT ignored, and the signal would then never arrive.
INTERRUPT_THE_IMPORT = """
import importlib.abc, os, signal, sys

signal.signal(signal.SIGINT, signal.default_int_handler)

class Interrupting(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "carebench.cli":
            os.kill(os.getpid(), signal.SIGINT)
        return None

sys.meta_path.insert(0, Interrupting())
sys.argv = ["carebench", "--version"]
"""
#: How the command starts: the console script's entry point, and `python -m carebench`.
ENTRIES = {
    "console script": "from carebench.launcher import main\nsys.exit(main())",
    "python -m": "import runpy\nrunpy.run_module('carebench', run_name='__main__')",
}


@pytest.mark.parametrize("entry", list(ENTRIES))
def test_ctrl_c_while_the_cli_imports_exits_130_quietly(entry: str) -> None:
    """SIGINT during `import carebench.cli` ends the command with status 130 and
    `interrupted`, not a KeyboardInterrupt traceback."""
    script = INTERRUPT_THE_IMPORT + ENTRIES[entry]
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert "Traceback" not in done.stderr
    assert (done.returncode, done.stderr, done.stdout) == (130, "interrupted\n", "")


def test_the_hook_interrupts_a_bare_import() -> None:
    """The test's SIGINT does land in the import: importing the CLI directly, as the console
    script did before the launcher, ends in a KeyboardInterrupt traceback."""
    script = INTERRUPT_THE_IMPORT + "from carebench.cli import main\nsys.exit(main())"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode != 0
    assert "Traceback" in done.stderr and "KeyboardInterrupt" in done.stderr


def test_an_interrupt_escaping_the_cli_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A KeyboardInterrupt the CLI does not handle itself (in its argument parsing, say) is
    `interrupted` and 130 too."""

    def interrupted() -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "main", interrupted)
    assert launcher.main() == 130
    assert capsys.readouterr().err == "interrupted\n"


def test_the_launcher_runs_the_cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without an interrupt the launcher is the CLI: its output and its exit status."""
    monkeypatch.setattr(sys, "argv", ["carebench", "serve", "--workers", "0"])
    assert launcher.main() == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_the_console_script_starts_at_the_launcher() -> None:
    """pyproject.toml's `carebench` script is the launcher, not carebench.cli (whose import
    a Ctrl-C would interrupt outside any handler)."""
    root = Path(__file__).resolve().parents[1]
    project = tomllib.loads((root / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["carebench"] == "carebench.launcher:main"
