"""The locustfile's `--carebench-*` options: derived from LoadConfig, parsed as loadtest's."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from carebench.cli import main
from carebench.errors import ConfigError
from carebench.loadgen.config import CLIENT_SETTINGS
from carebench.locust import LOCUSTFILE
from carebench.locust.options import (
    APPEND_FLAG,
    OUTPUT_FLAG,
    add_arguments,
    appending,
    client_fields,
    load_config,
    output_path,
)


class RecordingParser:
    """Locust's parser as far as the options use it: add_argument, with env_var and
    is_secret (which plain argparse does not take)."""

    def __init__(self) -> None:
        self.options: dict[str, dict[str, Any]] = {}
        self.parser = argparse.ArgumentParser()

    def add_argument(self, *flags: str, **options: Any) -> None:
        self.options[flags[0]] = options
        plain = {k: v for k, v in options.items() if k not in ("env_var", "is_secret")}
        self.parser.add_argument(*flags, **plain)


def parsed(*argv: str) -> argparse.Namespace:
    recording = RecordingParser()
    add_arguments(recording)
    return recording.parser.parse_args(list(argv))


def test_every_client_setting_becomes_a_prefixed_flag_with_its_env_name() -> None:
    """Each loadtest client setting appears as --carebench-FLAG with CAREBENCH_* env."""
    recording = RecordingParser()
    add_arguments(recording)
    assert {item.name for item in client_fields()} == set(CLIENT_SETTINGS)
    assert recording.options["--carebench-ids"]["env_var"] == "CAREBENCH_IDS"
    assert recording.options["--carebench-timeout"]["env_var"] == "CAREBENCH_TIMEOUT"
    assert recording.options["--carebench-token"]["is_secret"] is True
    assert "fhir-read" in recording.options["--carebench-endpoint"]["choices"]
    assert recording.options["--carebench-honor-retry-after"]["action"] == "store_true"
    assert {OUTPUT_FLAG, APPEND_FLAG} <= recording.options.keys()
    assert len(recording.options) == len(CLIENT_SETTINGS) + 2


def test_parsed_options_make_a_load_config() -> None:
    """Flags parse as loadtest's (durations with units) into one LoadConfig."""
    options = parsed(
        "--carebench-ids",
        "zipf:1000",
        "--carebench-priorities",
        "critical:1,batch:3",
        "--carebench-timeout",
        "500ms",
        "--carebench-endpoint",
        "fhir-read",
        "--carebench-honor-retry-after",
        "--carebench-output",
        "out.json",
        "--carebench-append",
    )
    load = load_config(options, users=12, run_time=30.0)
    assert (load.ids, load.priorities, load.timeout, load.endpoint) == (
        "zipf:1000",
        "critical:1,batch:3",
        0.5,
        "fhir-read",
    )
    assert load.honor_retry_after is True
    assert (load.concurrency, load.duration) == (12, 30.0)
    assert output_path(options) == "out.json"
    assert appending(options) is True


def test_defaults_are_loadtests() -> None:
    """No flags: loadtest's defaults, an unbounded run, no output file."""
    load = load_config(parsed(), users=0, run_time=None)
    assert (load.ids, load.timeout, load.endpoint, load.duration) == (
        "fixed:P12345",
        5.0,
        "legacy",
        None,
    )
    assert load.concurrency == 1
    assert output_path(parsed()) is None
    assert appending(parsed()) is False


def test_token_file_is_read_into_the_token(tmp_path: Path) -> None:
    """--carebench-token-file gives the token (which the master then sends its workers)."""
    token = tmp_path / "token"
    token.write_text("abc.def-ghi\n", encoding="ascii")
    load = load_config(parsed("--carebench-token-file", str(token)), 1, None)
    assert load.headers == {"Authorization": "Bearer abc.def-ghi"}


def test_bad_values_are_config_errors() -> None:
    """A bad id distribution or priority mix is refused as loadtest refuses it."""
    with pytest.raises(ConfigError, match="--ids"):
        load_config(parsed("--carebench-ids", "zipf:0"), 1, None)
    with pytest.raises(ConfigError, match="--priorities"):
        load_config(parsed("--carebench-priorities", "urgent:1"), 1, None)


def test_locustfile_command_prints_the_shipped_file(capsys: pytest.CaptureFixture[str]) -> None:
    """`carebench locustfile` prints the path of the locustfile in the package."""
    assert main(["locustfile"]) == 0
    printed = Path(capsys.readouterr().out.strip())
    assert printed == LOCUSTFILE
    assert printed.is_file() and "class CarebenchUser" in printed.read_text(encoding="utf-8")
