"""Implementations registered by name, imported only when chosen, with helpful errors."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from carebench.errors import ConfigError


def unknown_name_error(flag: str, kind: str, name: str, valid: Iterable[str]) -> ConfigError:
    """`--pattern: unknown pattern 'workerpol' (did you mean 'workerpool'?; valid: ...)`."""
    choices = list(valid)
    close = difflib.get_close_matches(name, choices, n=1)
    hint = f"did you mean {close[0]!r}?; " if close else ""
    return ConfigError(f"{flag}: unknown {kind} {name!r} ({hint}valid: {', '.join(choices)})")


def check_choice(flag: str, kind: str, name: str, valid: Iterable[str]) -> str:
    """`name` when it is one of `valid`, else a ConfigError suggesting the closest."""
    choices = tuple(valid)
    if name not in choices:
        raise unknown_name_error(flag, kind, name, choices)
    return name


class Registry(Mapping[str, str]):
    """name -> "module:attribute"; the module is imported on first use of that name.

    `flag` and `kind` word the error for an unknown name (`--pattern`, `pattern`).
    """

    def __init__(self, flag: str, kind: str, targets: dict[str, str]) -> None:
        self.flag = flag
        self.kind = kind
        self._targets = dict(targets)

    def __getitem__(self, name: str) -> str:
        return self._targets[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._targets)

    def __len__(self) -> int:
        return len(self._targets)

    def names(self) -> list[str]:
        return list(self._targets)

    def check(self, name: str) -> str:
        """`name` if registered, else a ConfigError naming the closest registered name."""
        return check_choice(self.flag, self.kind, name, self._targets)

    def load(self, name: str) -> Any:
        """The object registered as `name`, importing its module only now."""
        module_name, _, attribute = self._targets[self.check(name)].partition(":")
        return getattr(importlib.import_module(module_name), attribute)
