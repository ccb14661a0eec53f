"""Properties of the token bucket behind the ratelimit pattern, on a hand-driven clock.

What each property protects:
* admission matches an exact model of the rule (`burst` tokens at most, `rate` per second
  refilled, one per request) computed with fractions: a request is admitted whenever the
  model holds a whole token and refused whenever it does not (float rounding may decide
  only within a billionth of a token), so no token is invented and none is lost;
* over every window of the run, admissions never exceed burst + rate x window length;
* the bucket's level stays within [0, burst];
* a refused caller is told a positive wait, and that wait is exact: waiting it gets a token,
  waiting visibly less does not; through the server, the 429's Retry-After is a positive
  whole number of seconds after which the same request is admitted.
"""

from __future__ import annotations

import asyncio
import copy
from collections import Counter
from fractions import Fraction
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from carebench.limits.token_bucket import TokenBucket
from carebench.loop_clock import ManualLoopClock
from carebench.patterns.base import PatternConfig
from carebench.patterns.ratelimit import RateLimitPattern
from carebench.server.app import PATIENTS_PATH, CareBenchApp
from tests.fakes import GatedBackend
from tests.property.bounds import BOUNDED

#: Rounding may decide a take only this close to a whole token (model vs float arithmetic).
TOLERANCE = Fraction(1, 10**9)

rates = st.one_of(st.floats(0.01, 10_000.0), st.sampled_from([0.5, 1.0, 3.0, 10.0, 1e-3]))
bursts = st.integers(1, 50)
#: Clock readings as the event loop gives them: from 0 to days of uptime.
starts = st.one_of(st.just(0.0), st.floats(0.0, 1e6), st.just(1000.0))
#: Steps: nothing, tiny, a fraction of a token, seconds; exact binary fractions and decimals.
steps = st.one_of(
    st.just(0.0),
    st.floats(0.0, 2.0),
    st.integers(0, 64).map(lambda n: n / 64),
    st.sampled_from([0.01, 0.1, 1e-9, 30.0]),
)
#: A run: (clock step, requests at once after it).
runs = st.lists(st.tuples(steps, st.integers(0, 8)), min_size=1, max_size=40)


@BOUNDED
@given(rates, bursts, starts, runs)
@example(10.0, 5, 1000.0, [(0.01, 8)] * 40)
@example(3.0, 1, 0.0, [(1 / 3, 1)] * 30)
def test_admissions_follow_the_exact_model(
    rate: float, burst: int, start: float, run: list[tuple[float, int]]
) -> None:
    """Each request is admitted exactly when the exact model holds a whole token, the level
    stays in [0, burst] and tracks the model, and no window admits more than
    burst + rate x its length."""
    clock = ManualLoopClock(start)
    bucket = TokenBucket(rate, burst, clock)
    model = Fraction(burst)
    exact_rate = Fraction(rate)
    previous = Fraction(clock.now())
    admitted_at: list[Fraction] = []
    for step, requests in run:
        clock.advance(step)
        now = Fraction(clock.now())  # the clock's own reading: its rounding is not the bucket's
        model = min(Fraction(burst), model + (now - previous) * exact_rate)
        previous = now
        for _ in range(requests):
            taken = bucket.try_take()
            if model >= 1 + TOLERANCE:
                assert taken, f"refused with {float(model)} tokens owed"
            elif model < 1 - TOLERANCE:
                assert not taken, f"admitted with only {float(model)} tokens"
            if taken:
                model -= 1
                admitted_at.append(now)
        level = bucket.tokens
        assert 0.0 <= level <= burst
        assert abs(Fraction(level) - model) <= TOLERANCE * max(1, burst)
    # Every window from one admission time to a later one (the tightest windows there are).
    times = sorted(Counter(admitted_at).items())
    for i, (start_time, _) in enumerate(times):
        admitted = 0
        for end_time, count in times[i:]:
            admitted += count
            assert admitted <= burst + exact_rate * (end_time - start_time) + TOLERANCE


@BOUNDED
@given(rates, bursts, starts, runs)
@example(10.0, 5, 1000.0, [(0.0, 8)])
@example(3.0, 1, 123456.789, [(0.0, 2)])
@example(0.2, 1, 0.0, [(0.0, 1)])
def test_the_wait_of_a_refused_request_is_exact(
    rate: float, burst: int, start: float, run: list[tuple[float, int]]
) -> None:
    """Once a request is refused, wait_time is positive, a thousandth less than it is not
    enough (when a hundredth of a token or more is missing), and waiting exactly that long
    gets a token, whatever the clock reads."""
    clock = ManualLoopClock(start)
    bucket = TokenBucket(rate, burst, clock)
    for step, requests in run:
        clock.advance(step)
        for _ in range(requests):
            bucket.try_take()
    while bucket.try_take():
        pass
    missing = 1.0 - bucket.tokens
    wait = bucket.wait_time()
    assert wait > 0.0
    if missing >= 0.01:
        early, early_clock = copy.deepcopy((bucket, clock))
        early_clock.advance(wait * 0.999)
        assert not early.try_take(), "a token came before the wait was over"
    clock.advance(wait)
    assert bucket.try_take(), f"no token {wait!r} s later, as promised"


async def request_patient(app: CareBenchApp) -> tuple[int, dict[bytes, bytes]]:
    """One GET /api/v1/patients?id=P1 through the ASGI app; (status, headers)."""
    sent: list[Any] = []

    async def receive() -> Any:
        await asyncio.Event().wait()

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": PATIENTS_PATH}
    await app({**scope, "query_string": b"id=P1", "headers": []}, receive, send)
    return sent[0]["status"], dict(sent[0]["headers"])


@BOUNDED
@given(rates, bursts, st.lists(steps, max_size=5))
@example(0.3, 1, [])
@example(0.2, 1, [])
@example(10_000.0, 1, [])
def test_retry_after_is_a_positive_whole_wait_that_works(
    rate: float, burst: int, pauses: list[float]
) -> None:
    """Through the server: the first refusal is a 429 whose Retry-After is a whole number of
    seconds >= 1, and the same request sent that many seconds later is admitted."""
    clock = ManualLoopClock()
    backend = GatedBackend(open_gate=True)
    pattern = RateLimitPattern(backend, PatternConfig(rate_limit=rate, burst=burst), clock)
    app = CareBenchApp(pattern, backend)

    async def scenario() -> None:
        await app.startup()
        try:
            for pause in pauses:
                clock.advance(pause)
                await request_patient(app)
            for _ in range(burst + 1):
                status, headers = await request_patient(app)
                if status == 429:
                    break
            assert status == 429
            retry_after = int(headers[b"retry-after"])
            assert retry_after >= 1
            clock.advance(retry_after)
            status, _ = await request_patient(app)
            assert status == 200
        finally:
            await app.shutdown()

    asyncio.run(scenario())
