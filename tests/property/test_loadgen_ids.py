"""Properties of the load generator's patient id choosers (--ids).

What each property protects:
* `parse_ids` accepts exactly the documented forms fixed:ID, uniform:N and zipf:N[:S] (N an
  integer >= 1, S a finite number > 0) and refuses anything else with a ConfigError naming
  the flag, never another exception (a steep S once overflowed into a traceback);
* every id drawn is one of the N synthetic patients and a valid patient id; fixed:ID always
  sends ID as given;
* uniform:N draws the stream's `randrange(N)`-th patient, and zipf:N:S draws rank k with
  probability proportional to k**-S: each seeded draw is the rank whose share of [0, 1)
  holds the stream's uniform number, with the shares computed independently.
"""

from __future__ import annotations

import math
import random

from hypothesis import example, given
from hypothesis import strategies as st

from carebench.backends.records import patient_id_for
from carebench.errors import ConfigError
from carebench.loadgen.ids import parse_ids
from carebench.models import is_valid_patient_id
from tests.property.bounds import BOUNDED

#: N as text: small integers (a zipf table of N floats is built at once) and non-integers.
COUNT_TEXTS = st.one_of(
    st.integers(-3, 300).map(str), st.sampled_from(["x", "", "1.5", "1e3", " 7", "0x10"])
)
EXPONENT_TEXTS = st.one_of(
    st.floats().map(repr),
    st.sampled_from(["nan", "inf", "-inf", "1e309", "1100", "0", "-1", "", "x", "1.1"]),
)
specs = st.one_of(
    st.tuples(st.just("fixed"), st.text(max_size=8)).map(":".join),
    st.tuples(st.just("uniform"), COUNT_TEXTS).map(":".join),
    st.tuples(st.just("uniform"), COUNT_TEXTS, EXPONENT_TEXTS).map(":".join),
    st.tuples(st.just("zipf"), COUNT_TEXTS).map(":".join),
    st.tuples(st.just("zipf"), COUNT_TEXTS, EXPONENT_TEXTS).map(":".join),
    st.sampled_from(["", "fixed", "zipf", "Zipf:10", "nope:3"]),
)


def count_of(text: str) -> int | None:
    try:
        n = int(text)
    except ValueError:
        return None
    return n if n >= 1 else None


def exponent_of(text: str) -> float | None:
    try:
        s = float(text)
    except ValueError:
        return None
    return s if 0 < s < math.inf else None


def accepted(spec: str) -> bool:
    """The documented forms: fixed:ID (ID not empty), uniform:N, zipf:N or zipf:N:S."""
    kind, colon, rest = spec.partition(":")
    if not colon:
        return False
    if kind == "fixed":
        return bool(rest)
    if kind == "uniform":
        return count_of(rest) is not None
    if kind == "zipf":
        n_text, colon, s_text = rest.partition(":")
        return count_of(n_text) is not None and (not s_text or exponent_of(s_text) is not None)
    return False


@BOUNDED
@given(specs)
@example("zipf:10:1100")
@example("zipf:10:nan")
@example("uniform:5:1.1")
def test_specs_are_accepted_exactly_by_the_rule(spec: str) -> None:
    """A spec is accepted exactly when it has a documented form; otherwise the only
    exception is a ConfigError naming the flag."""
    try:
        parse_ids(spec)
    except ConfigError as error:
        assert "--ids" in str(error)
        assert not accepted(spec), spec
    else:
        assert accepted(spec), spec


@BOUNDED
@given(st.text(min_size=1, max_size=20), st.integers(0, 2**32))
def test_fixed_always_sends_the_id_as_given(patient_id: str, seed: int) -> None:
    """fixed:ID sends ID, whatever it is (invalid ids are how a user tests 400s)."""
    choose = parse_ids(f"fixed:{patient_id}", seed)
    assert [choose() for _ in range(3)] == [patient_id] * 3


@BOUNDED
@given(st.integers(1, 10**6), st.integers(0, 2**32))
def test_uniform_draws_the_streams_patient(n: int, seed: int) -> None:
    """uniform:N sends patient randrange(N) of the seeded stream: a valid id among N."""
    choose = parse_ids(f"uniform:{n}", seed)
    stream = random.Random(seed)
    for _ in range(20):
        patient_id = choose()
        assert patient_id == patient_id_for(stream.randrange(n))
        assert is_valid_patient_id(patient_id)


def zipf_shares(n: int, s: float) -> list[float]:
    """Where each rank's share of [0, 1) ends when rank k weighs k**-s (computed with exp/log
    and exactly rounded sums, not the way the chooser computes them)."""
    weights = [math.exp(-s * math.log(k)) for k in range(1, n + 1)]
    total = math.fsum(weights)
    return [math.fsum(weights[: rank + 1]) / total for rank in range(n)]


def rank_holding(shares: list[float], u: float) -> tuple[int, bool]:
    """The 0-based rank whose share holds u, and whether u lies so near a share's edge that
    rounding may decide (then a neighbour is as right)."""
    previous = 0.0
    for rank, bound in enumerate(shares):
        if u <= bound:
            return rank, min(u - previous, bound - u) < 1e-9
        previous = bound
    return len(shares) - 1, True


@BOUNDED
@given(
    st.integers(1, 200),
    st.one_of(st.floats(0.01, 5.0), st.floats(5.0, 2000.0), st.sampled_from([1e-300, 1100.0])),
    st.integers(0, 2**32),
)
def test_zipf_draws_each_rank_with_its_share(n: int, s: float, seed: int) -> None:
    """zipf:N:S sends rank k (1-based) with probability k**-S / sum: every seeded draw is
    the rank whose share holds the stream's uniform number."""
    choose = parse_ids(f"zipf:{n}:{s!r}", seed)
    stream = random.Random(seed)
    shares = zipf_shares(n, s)
    for _ in range(20):
        rank, near_edge = rank_holding(shares, stream.random())
        patient_id = choose()
        if near_edge:
            assert patient_id in {patient_id_for(r) for r in (rank - 1, rank, rank + 1)}
        else:
            assert patient_id == patient_id_for(rank)
