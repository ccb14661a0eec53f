"""The load generator's --token: on every request, cached with the request bytes."""

from __future__ import annotations

from pathlib import Path

import pytest

from carebench.errors import ConfigError
from carebench.loadgen.channels import HttpChannel
from carebench.loadgen.config import LoadConfig
from tests.loadgen.test_channels import answer, scripted_server


async def test_every_request_carries_the_token() -> None:
    """Cached requests, repeated ones and those with a priority all send Authorization."""
    requests: list[bytes] = []
    headers = LoadConfig(token="abc.def-ghi_jkl").headers
    async with scripted_server([answer(200)] * 3, requests) as port:
        channel = HttpChannel("127.0.0.1", port, headers=headers)
        assert await channel.fetch("P1") == 200
        assert await channel.fetch("P1") == 200  # from the channel's cache of encoded requests
        assert await channel.fetch("P2", "critical") == 200
        channel.close()
    assert all(b"Authorization: Bearer abc.def-ghi_jkl\r\n" in request for request in requests)
    assert b"X-Request-Priority: critical\r\n" in requests[2]


async def test_no_token_sends_no_authorization() -> None:
    """Without --token nothing changes on the wire."""
    requests: list[bytes] = []
    async with scripted_server([answer(200)], requests) as port:
        channel = HttpChannel("127.0.0.1", port, headers=LoadConfig().headers)
        assert await channel.fetch("P1") == 200
        channel.close()
    assert b"Authorization" not in requests[0]


def test_the_token_file_is_read_and_stripped(tmp_path: Path) -> None:
    """--token-file FILE: the token without its trailing newline."""
    path = tmp_path / "token"
    path.write_text("eyJ.abc.def\n")
    assert LoadConfig(token_file=str(path)).headers == {"Authorization": "Bearer eyJ.abc.def"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"token": "a b"}, "not a bearer token"),
        ({"token": "abc\r\nX-Evil: 1"}, "not a bearer token"),
        ({"token": "abc", "token_file": "f"}, "not both"),
        ({"token_file": "/nonexistent/token"}, "cannot read"),
    ],
)
def test_bad_tokens_are_refused_before_the_run(kwargs, message) -> None:
    """A token that cannot go into a header is a ConfigError, not a failure mid-run."""
    with pytest.raises(ConfigError, match=message):
        LoadConfig(**kwargs)
