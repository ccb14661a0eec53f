"""Clients for the shutdown part: raw sockets that keep requests in flight while a signal
lands, and account for every request they sent.

A request is *accepted* when the server has read it and handed it to the app. The app counts
it in its final stats (`final stats (...): N requests, ...`, printed when the server exits)
once its response is written. A request the server never read (its connection was still in
the listen backlog when the listener closed, or it reached an idle keep-alive connection the
drain closed) is not accepted: its client sees the connection refused, or closed with no
response byte, and may send it again elsewhere.

Each request the clients send ends in exactly one outcome:

- answered: a complete HTTP response (status line, headers, the whole Content-Length body);
- closed: the connection closed or reset before a single response byte;
- partial: some response bytes, then the connection closed (an accepted request, lost);
- timeout: no complete response within RESPONSE_TIMEOUT (an accepted request, lost or hung);

and refused connections are counted apart (nothing was sent on them). A client cannot tell
alone whether a "closed" request had been accepted; the server's counts tell: the requests it
counted must equal the complete responses that arrived. Lost accepted requests = partial +
timeout + |counted by the server - answered|, or, when the server died before counting
(granian's worker killed), the requests it had in flight at the signal (its /metrics) minus
those answered after it.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from dataclasses import dataclass, field

#: An answer can take the backend's latency plus the drain; a request still unanswered after
#: this is counted as lost (the tests' backends answer within 4 s).
RESPONSE_TIMEOUT = 15.0
#: How often the prober tries a new connection after the signal, and a refused client retries.
RETRY_EVERY = 0.01

FINAL_STATS = re.compile(
    r"final stats \((?P<pattern>[\w-]+)\): (?P<total>\d+) requests, (?P<ok>\d+) ok, "
    r"(?P<errors>\d+) errors, (?P<rejected>\d+) rejected, (?P<timeouts>\d+) timeouts, "
    r"(?P<cancelled>\d+) cancelled, (?P<invalid>\d+) invalid"
)


@dataclass(slots=True)
class Sent:
    """One request and how it ended."""

    written: float
    outcome: str = "timeout"
    status: int = 0
    retry_after: bool = False
    finished: float = 0.0
    #: The response said `connection: close` (as every response during a drain does).
    server_closes: bool = False


@dataclass(slots=True)
class Connects:
    """Connection attempts: when each began and whether the server let it in."""

    refused_at: list[float] = field(default_factory=list)
    accepted_started_at: list[float] = field(default_factory=list)

    def accepted_after_refusal(self) -> int:
        """Connections let in although they began after a refusal was seen: once the
        listener has closed, none may be."""
        if not self.refused_at:
            return 0
        first = min(self.refused_at)
        return sum(1 for started in self.accepted_started_at if started > first)


@dataclass(slots=True)
class DrainLoad:
    """Clients sending GET /api/v1/patients to host:port until `stop` is set.

    Even clients keep their connection alive between requests (so the drain's closing of
    idle connections is exercised), odd ones open a connection per request.
    """

    host: str
    port: int
    clients: int
    requests: list[Sent] = field(default_factory=list)
    connects: Connects = field(default_factory=Connects)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    #: Set at the first refused connection.
    refused: asyncio.Event = field(default_factory=asyncio.Event)
    signalled_at: float = 0.0

    async def run(self) -> None:
        """Run the clients and the prober until `stop`."""
        tasks = [self._client(index) for index in range(self.clients)]
        await asyncio.gather(*tasks, self._prober())

    def written(self) -> int:
        return len(self.requests)

    def in_flight(self) -> int:
        return sum(1 for sent in self.requests if not sent.finished)

    def outcomes(self) -> Counter[str]:
        return Counter(sent.outcome for sent in self.requests)

    def statuses(self) -> Counter[int]:
        return Counter(sent.status for sent in self.requests if sent.outcome == "answered")

    def answered_after_signal(self) -> int:
        return sum(
            1
            for sent in self.requests
            if sent.outcome == "answered" and sent.finished > self.signalled_at > 0
        )

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        started = time.monotonic()
        try:
            connection = await asyncio.open_connection(self.host, self.port)
        except OSError:
            self.connects.refused_at.append(time.monotonic())
            self.refused.set()
            return None
        self.connects.accepted_started_at.append(started)
        return connection

    async def _client(self, index: int) -> None:
        keep_alive = index % 2 == 0
        connection = None
        number = 0
        while not self.stop.is_set():
            if connection is None:
                connection = await self._connect()
                if connection is None:
                    await asyncio.sleep(RETRY_EVERY)
                    continue
            reader, writer = connection
            number += 1
            sent = Sent(written=time.monotonic())
            self.requests.append(sent)
            await _exchange(reader, writer, f"P{index:03d}{number:05d}", keep_alive, sent)
            sent.finished = time.monotonic()
            if not keep_alive or sent.outcome != "answered" or sent.server_closes:
                writer.close()
                connection = None

    async def _prober(self) -> None:
        """After the signal, a new connection every RETRY_EVERY: when are they refused?"""
        while not self.stop.is_set():
            if self.signalled_at:
                connection = await self._connect()
                if connection is not None:
                    connection[1].close()
            await asyncio.sleep(RETRY_EVERY)


async def _exchange(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    patient: str,
    keep_alive: bool,
    sent: Sent,
) -> None:
    request = (
        f"GET /api/v1/patients?id={patient} HTTP/1.1\r\nHost: carebench\r\n"
        + ("" if keep_alive else "Connection: close\r\n")
        + "\r\n"
    )
    try:
        writer.write(request.encode())
        await writer.drain()
    except OSError:
        sent.outcome = "closed"
        return
    try:
        await asyncio.wait_for(_read_response(reader, sent), RESPONSE_TIMEOUT)
    except TimeoutError:
        sent.outcome = "timeout"


async def _read_response(reader: asyncio.StreamReader, sent: Sent) -> None:
    data = b""
    while True:
        try:
            chunk = await reader.read(65536)
        except OSError:  # reset
            chunk = b""
        if not chunk:
            sent.outcome = "partial" if data else "closed"
            return
        data += chunk
        end = data.find(b"\r\n\r\n")
        if end < 0:
            continue
        head = data[:end].decode("latin-1").lower().split("\r\n")
        length = next(
            (int(line.split(":", 1)[1]) for line in head if line.startswith("content-length:")),
            0,
        )
        if len(data) >= end + 4 + length:
            sent.outcome = "answered"
            sent.status = int(head[0].split()[1])
            sent.retry_after = any(line.startswith("retry-after:") for line in head)
            sent.server_closes = "connection: close" in head
            return


def final_stats(output: list[str]) -> dict[str, int]:
    """The counts of the server's `final stats` line (empty when it printed none)."""
    for line in output:
        match = FINAL_STATS.search(line)
        if match:
            return {key: int(value) for key, value in match.groupdict().items() if key != "pattern"}
    return {}
