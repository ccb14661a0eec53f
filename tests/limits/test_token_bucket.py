"""TokenBucket driven by a hand-advanced clock: exact admission counts and exact waits."""

from __future__ import annotations

import pytest

from carebench.limits.token_bucket import TokenBucket
from carebench.loop_clock import ManualLoopClock

RATE = 10.0
BURST = 5


def drain(bucket: TokenBucket, attempts: int = 100) -> int:
    """Try to take `attempts` tokens at once; return how many were granted."""
    return sum(bucket.try_take() for _ in range(attempts))


#: Steps that are exact in binary, so the hand-driven clock reaches exactly 3.0 s and the
#: count pins the bucket's arithmetic rather than float rounding of the clock.
EXACT_STEPS = [1 / 128, 1 / 64, 1 / 16, 1 / 8]


@pytest.mark.parametrize("step", EXACT_STEPS)
def test_admits_rate_times_elapsed_plus_burst_when_hammered(step: float) -> None:
    """Hammered for 3 s in small steps, the bucket admits exactly floor(rate x 3) + burst."""
    loop_clock = ManualLoopClock()
    bucket = TokenBucket(RATE, BURST, loop_clock)
    admitted = drain(bucket)
    for _ in range(round(3.0 / step)):
        loop_clock.advance(step)
        admitted += drain(bucket)
    assert admitted == 35


def test_never_over_admits_and_loses_no_token_with_decimal_steps() -> None:
    """With 10 ms steps the bucket never admits more than rate x elapsed + burst, and by 3.05 s
    it has granted all 35 tokens the 3 s window earned (rounding may delay one, never drop it)."""
    loop_clock = ManualLoopClock()
    bucket = TokenBucket(RATE, BURST, loop_clock)
    start = loop_clock.now()
    admitted = drain(bucket)
    for _ in range(305):
        loop_clock.advance(0.01)
        admitted += drain(bucket)
        assert admitted <= int(RATE * (loop_clock.now() - start) + 1e-6) + BURST
    assert admitted == 35


def test_first_hammer_gets_only_the_burst() -> None:
    """With no time elapsed, a full bucket grants exactly `burst` tokens and then refuses."""
    bucket = TokenBucket(RATE, BURST, ManualLoopClock())
    assert drain(bucket) == BURST
    assert not bucket.try_take()


def test_long_idle_never_grants_more_than_burst() -> None:
    """After an hour of idling the bucket holds `burst` tokens, not rate x idle time."""
    loop_clock = ManualLoopClock()
    bucket = TokenBucket(RATE, BURST, loop_clock)
    drain(bucket)
    loop_clock.advance(3600.0)
    assert bucket.tokens == BURST
    assert drain(bucket) == BURST


def test_refill_is_proportional_to_elapsed_time() -> None:
    """An emptied bucket regains one token per 1/rate seconds, and not before."""
    loop_clock = ManualLoopClock()
    bucket = TokenBucket(RATE, BURST, loop_clock)
    drain(bucket)
    loop_clock.advance(0.09)
    assert not bucket.try_take()
    loop_clock.advance(0.01)
    assert bucket.try_take()
    assert not bucket.try_take()


def test_wait_time_is_exact_after_emptying() -> None:
    """Right after the bucket is emptied, the next token is exactly 1/rate seconds away."""
    bucket = TokenBucket(RATE, BURST, ManualLoopClock())
    drain(bucket)
    assert bucket.wait_time() == pytest.approx(0.1)


def test_wait_time_shrinks_as_the_clock_advances() -> None:
    """Part of the way to the next token, wait_time is what is left of 1/rate."""
    loop_clock = ManualLoopClock()
    bucket = TokenBucket(RATE, BURST, loop_clock)
    drain(bucket)
    loop_clock.advance(0.04)
    assert bucket.wait_time() == pytest.approx(0.06)


def test_wait_time_is_zero_when_a_token_is_available() -> None:
    """A bucket with a token to give reports no wait, full or partly drained."""
    bucket = TokenBucket(RATE, BURST, ManualLoopClock())
    assert bucket.wait_time() == 0.0
    for _ in range(BURST - 1):
        assert bucket.try_take()
    assert bucket.wait_time() == 0.0


def test_wait_time_does_not_consume_a_token() -> None:
    """Asking how long to wait leaves the tokens where they were."""
    bucket = TokenBucket(RATE, 1, ManualLoopClock())
    assert bucket.wait_time() == 0.0
    assert bucket.try_take()
    assert bucket.wait_time() > 0.0
