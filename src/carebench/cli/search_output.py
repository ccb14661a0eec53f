"""What `tune` and `capacity` share once a search has run: progress lines and its outputs."""

from __future__ import annotations

import json
import sys
from typing import Any, Literal

from rich.console import Console

from carebench.report.files import write_atomically
from carebench.tuning.config import SearchOutput


def say(line: str) -> None:
    """Progress on stderr, one line each, never wrapped (stdout may carry --json)."""
    print(line, file=sys.stderr, flush=True)


def emit(document: Any, outputs: SearchOutput, kind: Literal["tune", "capacity"]) -> None:
    """Write the search's document where asked (--output, --png, --html), then print it: as
    JSON with --json, otherwise as the terminal table. The report modules (matplotlib among
    them) are imported only when an output needs them."""
    text = json.dumps(document, indent=2)
    if outputs.output:
        write_atomically(outputs.output, text + "\n")
    if outputs.png:
        from carebench.report import tuning_plots

        write_atomically(outputs.png, getattr(tuning_plots, f"{kind}_png")(document))
    if outputs.html:
        from carebench.report import tuning

        getattr(tuning, f"write_{kind}_html")(document, outputs.html)
    if outputs.json:
        sys.stdout.write(text + "\n")
    else:
        from carebench.report import tuning

        width = None if sys.stdout.isatty() else 160
        getattr(tuning, f"print_{kind}")(document, Console(highlight=False, width=width))
