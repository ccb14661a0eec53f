"""The locustfile's own options: carebench's client settings as `--carebench-*` Locust flags.

They are derived from LoadConfig's fields (one definition per setting): the same defaults,
help, parsing and `CAREBENCH_*` environment variables as `carebench loadtest`'s flags, with a
`carebench-` prefix so they cannot clash with Locust's own. Locust sends the master's values to
every worker with each spawn, so they are given to the master only.
"""

from __future__ import annotations

from typing import Any, Protocol

from carebench.loadgen.config import CLIENT_SETTINGS, LoadConfig
from carebench.settings import SWITCH, Field, fields_of

PREFIX = "carebench_"
#: Where the master (or a single-process run) writes the results, as `loadtest --output` does.
OUTPUT_FLAG = "--carebench-output"
#: Add the run to the results already in the output file instead of replacing them.
APPEND_FLAG = "--carebench-append"
#: Settings whose values must not show in Locust's web UI.
SECRETS = frozenset({"token"})


class ArgumentParser(Protocol):
    """What the options need of Locust's parser (a configargparse parser)."""

    def add_argument(self, *flags: str, **options: Any) -> Any: ...


def locust_flag(item: Field) -> str:
    """`--ids` -> `--carebench-ids`."""
    return "--carebench-" + item.setting.flag.removeprefix("--")


def client_fields() -> list[Field]:
    """The LoadConfig settings a Locust user applies (how each simulated client behaves)."""
    return list(fields_of(LoadConfig, CLIENT_SETTINGS))


def add_arguments(parser: ArgumentParser) -> None:
    """Add the `--carebench-*` options to Locust's parser (its init_command_line_parser)."""
    for item in client_fields():
        meta = item.setting
        options: dict[str, Any] = {
            "dest": PREFIX + item.name,
            "default": item.default,
            "env_var": meta.env,
            "help": f"{meta.help} (carebench loadtest {meta.flag})",
        }
        if meta.kind is SWITCH:
            options["action"] = "store_true"
        else:
            options["type"] = meta.kind.parse
            options["metavar"] = meta.metavar or meta.kind.metavar or item.name.upper()
        if meta.choices is not None:
            options["choices"] = tuple(meta.choices())
        if item.name in SECRETS:
            options["is_secret"] = True
        parser.add_argument(locust_flag(item), **options)
    parser.add_argument(
        OUTPUT_FLAG,
        dest=PREFIX + "output",
        default=None,
        env_var="CAREBENCH_LOCUST_OUTPUT",
        metavar="FILE",
        help="master: write the merged results here, as `carebench loadtest --output` does "
        "(read them with `carebench report FILE`)",
    )
    parser.add_argument(
        APPEND_FLAG,
        dest=PREFIX + "append",
        action="store_true",
        env_var="CAREBENCH_LOCUST_APPEND",
        help=f"master: add this run to the results already in {OUTPUT_FLAG} (one run per "
        "server's pattern: `carebench report` compares them, as after `loadtest --pattern all`)",
    )


def load_config(options: Any, users: int, run_time: float | None) -> LoadConfig:
    """The LoadConfig of Locust's parsed options (ConfigError for a bad value): `users` are
    its clients, `run_time` its duration (None when Locust runs until stopped)."""
    values = {item.name: getattr(options, PREFIX + item.name) for item in client_fields()}
    return LoadConfig(concurrency=max(users, 1), duration=run_time or None, **values)


def output_path(options: Any) -> str | None:
    """The --carebench-output file, if one was given."""
    path: str | None = getattr(options, PREFIX + "output", None)
    return path


def appending(options: Any) -> bool:
    """Whether --carebench-append was given."""
    return bool(getattr(options, PREFIX + "append", False))
