"""argparse options derived from config dataclasses (see carebench.settings), with
`CAREBENCH_*` environment defaults; flags win over the environment."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from carebench.audit.config import AuditConfig
from carebench.auth.config import AuthConfig
from carebench.backends.config import BackendConfig
from carebench.backends.simulator import SimulatorConfig
from carebench.faults.config import FaultConfig
from carebench.patterns.base import PatternConfig
from carebench.resilience.config import ResilienceConfig
from carebench.server.config import ServerConfig
from carebench.server.setup import ServerSetup
from carebench.settings import SWITCH, Field, fields_of, setting

C = TypeVar("C")
#: Where an argparse action made from a setting keeps it (read by the CLI reference).
SETTING_ATTRIBUTE = "carebench_setting"


def add_settings(
    parser: argparse.ArgumentParser,
    config: type[Any],
    title: str,
    only: Sequence[str] | None = None,
) -> None:
    """One option per setting of `config` (or those named in `only`), in a help group."""
    group = parser.add_argument_group(title)
    for item in fields_of(config, only):
        add_setting(group, item, dest_of(config, item.name))


def dest_of(config: type[Any], name: str) -> str:
    """The namespace attribute of a setting, qualified by its config so that a sweep's
    `--rate` levels can never be read as a load test's `--rate`."""
    return f"{config.__name__}.{name}"


def add_setting(group: Any, item: Field, dest: str) -> None:
    meta = item.setting
    env_text = os.environ.get(meta.env)
    # argparse formats help with %: a literal one (errors 50%) must be doubled.
    help_text = f"{meta.help}{_default_text(item)} [env {meta.env}]".replace("%", "%%")
    if meta.kind is SWITCH:
        default = SWITCH.parse(env_text) if env_text is not None else item.default
        action = group.add_argument(
            meta.flag, dest=dest, action="store_true", default=default, help=help_text
        )
        setattr(action, SETTING_ATTRIBUTE, item)
        return
    metavar = meta.metavar or meta.kind.metavar or meta.flag.lstrip("-").upper()
    if meta.choices is not None:
        metavar = "{" + ",".join(meta.choices()) + "}"
    action = group.add_argument(
        meta.flag,
        dest=dest,
        # argparse converts a string default with `type`, so a bad variable fails like a flag.
        default=env_text if env_text is not None else item.default,
        type=meta.kind.parse,
        metavar=metavar,
        help=help_text,
    )
    setattr(action, SETTING_ATTRIBUTE, item)


def setting_of(action: argparse.Action) -> Field | None:
    """The setting an option was made from (None for options that are not settings)."""
    item: Field | None = getattr(action, SETTING_ATTRIBUTE, None)
    return item


def _default_text(item: Field) -> str:
    if item.default is None or item.default is False:
        return ""
    return f" (default {item.setting.kind.show(item.default)})"


def from_args(config: type[C], args: argparse.Namespace, **fixed: Any) -> C:
    """`config` from the options `add_settings` made for it (the others keep their default)."""
    values = {
        item.name: getattr(args, dest_of(config, item.name))
        for item in fields_of(config)
        if hasattr(args, dest_of(config, item.name)) and item.name not in fixed
    }
    return config(**values, **fixed)


#: The ServerConfig settings a load test forwards to the servers it starts.
FORWARDED_SERVER_SETTINGS = tuple(
    item.name for item in fields_of(ServerConfig) if item.setting.forwarded
)

#: The access-control settings too (not --insecure: servers a load test starts are local).
FORWARDED_AUTH_SETTINGS = tuple(
    item.name for item in fields_of(AuthConfig) if item.setting.forwarded
)


def add_serve_settings(parser: argparse.ArgumentParser, *, forwarded_only: bool = False) -> None:
    """The settings of `carebench serve`; a load test takes those it forwards to its servers."""
    only = FORWARDED_SERVER_SETTINGS if forwarded_only else None
    title = "servers started by the load test" if forwarded_only else "server"
    add_settings(parser, ServerConfig, title, only)
    add_settings(parser, PatternConfig, "pattern")
    add_settings(parser, ResilienceConfig, "resilience (combines with any pattern)")
    add_settings(parser, BackendConfig, "backend")
    add_settings(parser, SimulatorConfig, "database (simulated, or injected into a real one)")
    add_settings(parser, FaultConfig, "faults (injected into any backend on a schedule)")
    auth_only = FORWARDED_AUTH_SETTINGS if forwarded_only else None
    add_settings(parser, AuthConfig, "access control (docs/api.md)", auth_only)
    if not forwarded_only:
        add_settings(parser, AuditConfig, "audit (docs/security.md)")


def server_setup(args: argparse.Namespace) -> ServerSetup:
    return ServerSetup(
        from_args(ServerConfig, args),
        from_args(PatternConfig, args),
        from_args(SimulatorConfig, args),
        from_args(ResilienceConfig, args),
        from_args(BackendConfig, args),
        from_args(FaultConfig, args),
        from_args(AuthConfig, args),
        from_args(AuditConfig, args),
    )


@dataclass(frozen=True, slots=True)
class OutputFiles:
    """Where a load test or sweep writes its results besides the terminal."""

    json: bool = setting(False, "--json", "print the results as JSON on stdout", SWITCH)
    output: str | None = setting(None, "--output", "write the JSON results to FILE", metavar="FILE")
    csv: str | None = setting(None, "--csv", "write a flat CSV table to FILE", metavar="FILE")
    html: str | None = setting(
        None, "--html", "write a self-contained HTML report to FILE", metavar="FILE"
    )
    png: str | None = setting(None, "--png", "write the sweep plot to FILE", metavar="FILE")
