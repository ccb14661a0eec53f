"""A token bucket on an injectable LoopClock.

Not aiolimiter: its `AsyncLimiter` is a leaky bucket built to make callers *wait*, reads the
event loop's clock directly (tests could not drive time by hand), and keeps the level it
would need for a Retry-After in private state. Rejecting at once with an exact Retry-After
takes the dozen lines below.
"""

from __future__ import annotations

import math

from carebench.loop_clock import LoopClock

#: What wait_time asks for beyond the missing fraction of a token, in tokens: more than the
#: rounding of the refill arithmetic, so the promised token is there after the wait.
_WAIT_SLACK_TOKENS = 1e-9


class TokenBucket:
    """`burst` tokens at most, refilled at `rate` per second; one token per request."""

    def __init__(self, rate: float, burst: int, loop_clock: LoopClock) -> None:
        self.rate = rate
        self.burst = burst
        self._loop_clock = loop_clock
        self._tokens = float(burst)
        self._updated = loop_clock.now()

    def _refill(self) -> None:
        now = self._loop_clock.now()
        self._tokens = min(float(self.burst), self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    def try_take(self) -> bool:
        """Take a token if one is available."""
        self._refill()
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    @property
    def tokens(self) -> float:
        self._refill()
        return self._tokens

    def wait_time(self) -> float:
        """Seconds until the next token (0 when one is available now).

        Never short: a caller that waits exactly this long (on the same float clock) finds
        the token. The exact quotient can be, by a rounding: with rate 0.2 it is 5.0 s, and
        5.0 x 0.2 refills 0.9999999999999999 of a token. So it asks for a billionth of a
        token more, plus the clock's resolution at this time.
        """
        missing = 1.0 - self.tokens
        if missing <= 0.0:
            return 0.0
        return (missing + _WAIT_SLACK_TOKENS) / self.rate + math.ulp(self._updated)
