"""Channels whose answers and timing the test controls."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator


class ScriptedChannel:
    """Answers with the next status from a shared script; tracks concurrency."""

    def __init__(
        self, statuses: Iterator[int], state: dict[str, int], retry_after: float = 0.0
    ) -> None:
        self._statuses = statuses
        self._state = state
        self.resets = 0
        self.retry_after = 0.0
        self._refusal_retry_after = retry_after

    async def fetch(self, patient_id: str, priority: str | None = None) -> int:
        self._state["active"] += 1
        self._state["peak"] = max(self._state["peak"], self._state["active"])
        try:
            status = next(self._statuses)
            if status == -1:
                raise ConnectionRefusedError("scripted refusal")
            if status == -2:
                await asyncio.sleep(3600)
            await asyncio.sleep(0)
            self.retry_after = self._refusal_retry_after if status in (429, 503) else 0.0
            return status
        finally:
            self._state["active"] -= 1

    def reset(self) -> None:
        self.resets += 1

    def close(self) -> None:
        return None


class StallOnceChannel:
    """Answers instantly except once, when it stalls for `stall` seconds."""

    retry_after = 0.0

    def __init__(self, stall: float, at_call: int = 5) -> None:
        self.stall = stall
        self.at_call = at_call
        self.calls = 0

    async def fetch(self, patient_id: str, priority: str | None = None) -> int:
        self.calls += 1
        if self.calls == self.at_call:
            await asyncio.sleep(self.stall)
        return 200

    def reset(self) -> None:
        return None

    def close(self) -> None:
        return None
