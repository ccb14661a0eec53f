"""The `carebench` command's first code: a Ctrl-C at any point exits 130 without a traceback.

`carebench.cli` imports every subcommand and their libraries (about 0.3 s); its own handler
covers only the command it runs. This module imports nothing but `sys`, so the console script
and `python -m carebench` are inside the handler below from their first line of carebench.
"""

from __future__ import annotations

import sys

#: The shell's status for a command ended by SIGINT (128 + 2).
INTERRUPTED = 130


def main() -> int:
    """Import the CLI and run it; a KeyboardInterrupt anywhere is one line and status 130."""
    try:
        from carebench.cli import main as run_cli

        return run_cli()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return INTERRUPTED
