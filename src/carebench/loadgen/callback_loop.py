"""The closed loop over HTTP channels, driven by callbacks: no task, future or coroutine per
request.

This is the request path of a closed-loop load test, so this module is also compiled with
Cython when it can be (see carebench.loadgen.compiled): the same source, with the attribute
types declared in callback_loop.pxd. It must stay plain Python that Cython compiles unchanged.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from carebench.loadgen.channels import HttpChannel
from carebench.loadgen.priorities import no_priority
from carebench.loadgen.responses import ConnectionClosed, Response, ResponseCallback
from carebench.loadgen.results import Outcome, classify
from carebench.loadgen.timing import CONNECTION_ERROR_BACKOFF, Watchdog

if TYPE_CHECKING:
    from carebench.loadgen.engine import Engine, Stepped

__all__ = ["CallbackClient", "CallbackLoop"]

_INF = math.inf


class CallbackLoop:
    """The closed loop over HTTP channels without a task per client.

    Each client's next request is sent from the callback that settles the previous one, in
    the event loop's read callback: no future, no task wake-up and no coroutine per request
    (~1 us of ~10 us). Outcomes, deadlines (the same watchdog), the request budget, `until`
    and `stopping` are as in `Engine.closed_loop`'s task per client; a connection is (re)opened
    by a short task. Refused clients re-send at once: --honor-retry-after runs the task loop.
    """

    def __init__(
        self, engine: Engine, requests: float, until: float, shape: Stepped | None = None
    ) -> None:
        self.engine = engine
        #: The request budget as a value of `engine.sent` (which counts every send).
        self.budget_end = engine.sent + requests
        self.until = until
        self.shape = shape
        #: The engine's timer, read from here by settle: one lookup less per request.
        self.timer = engine.timer
        self.watchdog = Watchdog(engine.timeout, engine.timer)
        self.running = 0
        self.halted = False
        self.event_loop = asyncio.get_running_loop()
        self.finished: asyncio.Future[None] = self.event_loop.create_future()
        #: Clients whose next request waits for the end of this round of read callbacks.
        self.ready: list[CallbackClient] = []
        #: None when requests carry no priority class: no call per request to learn that.
        self.choose_priority = (
            None if engine.choose_priority is no_priority else engine.choose_priority
        )
        #: The lists of the recorder's pending buffer that settle appends to (re-read each
        #: round: warm-up ends with a new recorder).
        self.keys: list[int] = []
        self.latencies: list[float] = []
        self.times: list[float] = []
        self.take_pending()

    def take_pending(self) -> None:
        pending = self.engine.recorder.pending
        self.keys, self.latencies, self.times = pending.keys, pending.latencies, pending.times

    async def run(self) -> None:
        channels = [c for c in self.engine.channels if isinstance(c, HttpChannel)]
        clients = [CallbackClient(self, channel, index) for index, channel in enumerate(channels)]
        self.watchdog.clients.extend(clients)
        self.running = len(clients)
        enforcing = asyncio.get_running_loop().create_task(self.watchdog.run())
        try:
            self.send_each(clients)
            await self.finished
        finally:
            self.halted = True
            enforcing.cancel()
            for client in clients:
                client.stop()
            # Kept per client rather than written to the engine on every send.
            self.engine.last_send = max([self.engine.last_send] + [c.sent for c in clients])

    def send_soon(self, client: CallbackClient) -> None:
        """Send `client`'s next request once this round of read callbacks is over.

        Sending from the read callback itself wakes the target once per response; writing
        the round's requests together lets it find several at each wake-up, as the task per
        client does (measured: sending at once cost the target ~15 % more CPU per request
        and this client ~1 us more of system time).
        """
        if not self.ready:
            self.event_loop.call_soon(self.send_ready)
        self.ready.append(client)

    def send_ready(self) -> None:
        ready, self.ready = self.ready, []
        recorder = self.engine.recorder
        recorder.flush_if_full()
        self.take_pending()
        self.send_each(ready)

    def send_each(self, clients: Iterable[CallbackClient]) -> None:
        """Send each client's next request, or tell it it is done (budget spent, `until`
        passed, stopping), or hold it while the load shape leaves it out.

        One loop over a round's clients, with what is the same for all of them read once,
        rather than a call per client: ~0.1 us a request (measured in process).
        """
        engine = self.engine
        if self.halted or engine.stopping:
            for _ in clients:
                self.client_done()
            return
        timer, timeout, choose_id = engine.timer, engine.timeout, engine.choose_id
        budget_end, until, shape = self.budget_end, self.until, self.shape
        choose_priority = self.choose_priority
        sent = engine.sent
        try:
            for client in clients:
                now = timer()
                if sent >= budget_end or now >= until:
                    self.client_done()
                    continue
                if shape is not None and (idle := shape.idle_for(client.index, now)) > 0:
                    self.event_loop.call_later(idle, client.send_next)
                    continue
                sent += 1
                client.sent = now
                priority = client.priority = None if choose_priority is None else choose_priority()
                client.deadline = now + timeout
                patient_id = choose_id()
                send = client.send
                if send is not None and priority is None:
                    request = client.requests.get(patient_id)
                    if request is not None:
                        try:
                            send(request, client.settle_bound)
                        except ConnectionClosed:
                            client.send = None
                        else:
                            continue
                client.send_through_channel(patient_id, priority)
        finally:
            engine.sent = sent

    def client_done(self) -> None:
        self.running -= 1
        if self.running == 0 and not self.finished.done():
            self.finished.set_result(None)


class CallbackClient:
    """One closed-loop client of a CallbackLoop: send, settle, record, send again."""

    __slots__ = (
        "channel",
        "connecting",
        "deadline",
        "expired",
        "index",
        "loop",
        "priority",
        "requests",
        "send",
        "sent",
        "settle_bound",
    )

    def __init__(self, loop: CallbackLoop, channel: HttpChannel, index: int = 0) -> None:
        self.loop = loop
        self.channel = channel
        self.index = index
        self.deadline = math.inf
        self.expired = False
        self.sent = 0.0
        self.priority: str | None = None
        self.connecting: asyncio.Task[None] | None = None
        #: `settle`, bound once: a bound method made per request costs ~30 ns.
        self.settle_bound = self.settle
        #: The channel's encoded requests, and its open connection's send for them (None
        #: until the channel has sent once on that connection): see HttpChannel.send_encoded.
        self.requests = channel.requests
        self.send: Callable[[bytes, ResponseCallback], None] | None = None

    def send_next(self) -> None:
        """Send this client's next request (see CallbackLoop.send_each)."""
        self.loop.send_each((self,))

    def send_through_channel(self, patient_id: str, priority: str | None) -> None:
        """Send with the channel, which encodes the request; open a connection if needed."""
        channel = self.channel
        if channel.send_then(patient_id, priority, self.settle_bound):
            self.send = channel.send_encoded
            return
        self.send = None
        self.connecting = asyncio.get_running_loop().create_task(
            self._connect_and_send(patient_id, priority)
        )

    async def _connect_and_send(self, patient_id: str, priority: str | None) -> None:
        try:
            await self.channel.connect()
        except OSError as error:
            self.connecting = None
            self.settle(None, error)
            return
        except asyncio.CancelledError:
            self.connecting = None
            if self.expired:
                self.settle(None, None)
            return
        self.connecting = None
        if not self.channel.send_then(patient_id, priority, self.settle):
            self.settle(None, ConnectionError("connection closed as soon as it opened"))

    def expire(self) -> None:
        """The watchdog's deadline passed: end the request (settle follows, as a timeout)."""
        if self.connecting is not None:
            self.connecting.cancel()
        else:
            self.channel.reset()

    def settle(self, response: Response | None, error: OSError | None) -> None:
        loop = self.loop
        if loop.halted:
            return
        self.deadline = _INF
        done = loop.timer()
        if self.expired or response is None:
            self._settle_unanswered(done)
            return
        status = response.status
        if self.priority is None:
            # RunRecorder.record, inline (send_ready checks the buffer's size).
            loop.keys.append(status)  # its outcome follows from it: see Pending
            loop.latencies.append(done - self.sent)
            loop.times.append(done)
        else:
            loop.engine.recorder.record(
                classify(status), done - self.sent, done, status, priority=self.priority
            )
        ready = loop.ready  # loop.send_soon(self), one call less per request
        if not ready:
            loop.event_loop.call_soon(loop.send_ready)
        ready.append(self)

    def _settle_unanswered(self, done: float) -> None:
        """The request timed out (the watchdog expired it) or its connection failed."""
        loop = self.loop
        self.channel.reset()
        outcome: Outcome
        if self.expired:
            self.expired = False
            outcome = "timeout"
        else:
            outcome = "connection_error"
        loop.engine.recorder.record(outcome, done - self.sent, done, 0, priority=self.priority)
        if outcome == "connection_error":
            loop.event_loop.call_later(CONNECTION_ERROR_BACKOFF, self.send_next)
        else:
            loop.send_soon(self)

    def stop(self) -> None:
        if self.connecting is not None:
            self.connecting.cancel()
