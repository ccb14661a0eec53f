"""The `carebench` command: parse, validate, dispatch; errors become `error: ...` and exit 2."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable, Sequence
from types import FrameType

from carebench import __version__
from carebench.cli import (
    calibrate,
    capacity,
    db,
    demo,
    loadtest,
    locustfile,
    report,
    serve,
    sweep,
    token,
    tune,
)
from carebench.errors import BackendUnavailable, ConfigError
from carebench.loadgen.generators import GeneratorFailed
from carebench.loadgen.runner import TargetUnreachable
from carebench.server.process import ServerProcessError
from carebench.server.startup import StartupError

Command = Callable[[argparse.Namespace], int]


class ArgumentParser(argparse.ArgumentParser):
    """argparse that prints `error: ...` (and exits 2) without the usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {message}\n(see: {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="carebench", description=__doc__)
    parser.add_argument("--version", action="version", version=f"carebench {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    commands.required = True
    for module in (
        serve,
        loadtest,
        sweep,
        tune,
        capacity,
        report,
        demo,
        db,
        calibrate,
        token,
        locustfile,
    ):
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    run: Command = args.run
    # SIGTERM stops a command as Ctrl-C does, so cleanup runs (servers a load test started
    # are stopped, not orphaned); `serve` installs its own handlers for the drain.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return run(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (
        StartupError,
        ServerProcessError,
        TargetUnreachable,
        GeneratorFailed,
        BackendUnavailable,
        OSError,
    ) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug, not bad input: say so in one line, keep the trace opt-in
        if os.environ.get("CAREBENCH_DEBUG"):
            raise
        print(
            f"error: unexpected {type(exc).__name__}: {exc} (CAREBENCH_DEBUG=1 shows the "
            "traceback; please report it)",
            file=sys.stderr,
        )
        return 1


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
