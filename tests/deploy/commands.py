"""carebench's own command line, as the manifests' checks read it: the settings each command
takes from CAREBENCH_* variables, derived from the parser (so from the settings' fields)."""

from __future__ import annotations

import argparse

from carebench.cli import build_parser
from carebench.cli.options import setting_of
from carebench.settings import Field


def subparser(command: str) -> argparse.ArgumentParser:
    """The parser of `carebench COMMAND` (built now: it reads the environment's defaults)."""
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found: argparse.ArgumentParser = action.choices[command]
            return found
    raise AssertionError("carebench has no subcommands")


def env_settings(command: str) -> dict[str, Field]:
    """Each CAREBENCH_* variable `carebench COMMAND` reads, with the setting it sets."""
    fields = (setting_of(action) for action in subparser(command)._actions)
    return {item.setting.env: item for item in fields if item is not None}
