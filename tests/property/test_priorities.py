"""Properties of priority classes: the server's X-Request-Priority parsing and the load
generator's weighted mix (--priorities).

What each property protects:
* the server serves a request in the class its first X-Request-Priority names when that is
  exactly critical, standard or batch, as standard when the header is absent, and answers
  400 (never a 5xx, never a silent default) for any other bytes, empty included;
* `parse_priorities` accepts a spec exactly when every part is a known class with a finite
  weight > 0, and raises only ConfigError otherwise (a CLI error, not a traceback);
* an accepted mix draws each class with probability weight / total: for a seeded stream,
  every draw is the class whose share of [0, 1) holds the uniform number, computed exactly
  with fractions (no overflow of the total, no NaN weight silently taking every draw).
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from carebench.backends.records import synthetic_patient
from carebench.errors import ConfigError
from carebench.loadgen.priorities import parse_priorities
from carebench.models import PRIORITIES, Patient, Query
from carebench.responses import PlainResponseEncoder
from carebench.server.app import PATIENTS_PATH, CareBenchApp
from tests.fakes import GatedBackend
from tests.property.bounds import BOUNDED


class RecordingPattern:
    """Answers every query at once and remembers the class it arrived in."""

    name = "recording"
    bounded = False
    capacity = None
    backend_concurrency = None

    def __init__(self) -> None:
        self.encoder = PlainResponseEncoder()
        self.priorities: list[str] = []

    async def start(self) -> None:
        """Nothing to start."""

    async def submit(self, query: Query) -> Patient:
        self.priorities.append(query.priority)
        return synthetic_patient(query.patient_id)

    def stats(self) -> Any:
        return {"name": self.name, "in_flight": 0, "queued": 0}

    async def shutdown(self, drain_timeout: float) -> None:
        """Nothing to drain."""


Served = tuple[asyncio.AbstractEventLoop, CareBenchApp, RecordingPattern]


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    """One app and one event loop for every example (a loop per example costs more than
    the example)."""
    loop = asyncio.new_event_loop()
    pattern = RecordingPattern()
    app = CareBenchApp(pattern, GatedBackend(open_gate=True))  # type: ignore[arg-type]
    loop.run_until_complete(app.startup())
    yield loop, app, pattern
    loop.run_until_complete(app.shutdown())
    loop.close()


async def get_patient(app: CareBenchApp, headers: list[tuple[bytes, bytes]]) -> tuple[int, Any]:
    """Call the app as a server would; (status, decoded JSON body)."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        await asyncio.Event().wait()  # the client never leaves
        raise AssertionError("unreachable")

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "GET",
        "path": PATIENTS_PATH,
        "query_string": b"id=P12345",
        "headers": headers,
    }
    await app(scope, receive, send)
    return sent[0]["status"], json.loads(sent[1]["body"])


priority_values = st.one_of(
    st.sampled_from([name.encode() for name in PRIORITIES]),
    st.sampled_from([b"", b"Critical", b"BATCH", b" standard", b"critical ", b"urgent", b"\xff"]),
    st.binary(max_size=12),
)


@BOUNDED
@given(
    st.lists(priority_values, max_size=3),
    st.lists(st.sampled_from([(b"host", b"x"), (b"x-request-id", b"r1")]), max_size=2),
)
@example([], [])
@example([b""], [])
def test_server_serves_the_named_class_or_answers_400(
    served: Served, values: list[bytes], others: list[tuple[bytes, bytes]]
) -> None:
    """The first X-Request-Priority decides: a known class is served in that class, absent
    is standard, anything else is a 400 JSON error; the pattern never sees an unknown class."""
    loop, app, pattern = served
    pattern.priorities.clear()
    headers = others + [(b"x-request-priority", value) for value in values]
    status, body = loop.run_until_complete(get_patient(app, headers))
    first = values[0].decode("latin-1") if values else "standard"
    if first in PRIORITIES:
        assert status == 200 and body["success"] is True
        assert pattern.priorities == [first]
    else:
        assert status == 400 and body["success"] is False
        assert "X-Request-Priority" in body["error"]
        assert pattern.priorities == []


CLASS_NAMES = st.sampled_from([*PRIORITIES, "vip", "", "Critical", " batch"])
WEIGHT_TEXTS = st.one_of(
    st.floats().map(repr),
    st.sampled_from(["nan", "inf", "-inf", "1e309", "0", "-0", "x", "", "1_0", " 2", "0x10"]),
    st.integers(-3, 100).map(str),
)
spec_parts = st.one_of(
    st.tuples(CLASS_NAMES, WEIGHT_TEXTS).map(lambda pair: f"{pair[0]}:{pair[1]}"),
    CLASS_NAMES,
)


def weight_of(text: str) -> float | None:
    """The weight `text` gives, or None when the rule refuses it (not a finite number > 0)."""
    try:
        weight = float(text)
    except ValueError:
        return None
    return weight if 0 < weight < float("inf") else None


def accepted(spec: str) -> bool:
    """The documented rule: CLASS:WEIGHT pairs, each class known, each weight finite and > 0
    (an empty spec is no mix at all: no header is sent)."""
    if not spec:
        return True
    for part in spec.split(","):
        name, colon, weight_text = part.strip().partition(":")
        if name not in PRIORITIES or not colon or weight_of(weight_text) is None:
            return False
    return True


@BOUNDED
@given(st.lists(spec_parts, min_size=1, max_size=4).map(",".join))
@example("critical:nan,batch:1")
@example("critical:inf")
@example("critical:1,")
def test_specs_are_accepted_exactly_by_the_rule(spec: str) -> None:
    """A spec is accepted exactly when it follows the rule; otherwise the only exception is
    a ConfigError naming the flag."""
    try:
        parse_priorities(spec)
    except ConfigError as error:
        assert "--priorities" in str(error)
        assert not accepted(spec), spec
    else:
        assert accepted(spec), spec


#: Positive finite weights over the whole float range, huge (their sum overflows) and tiny.
weights = st.one_of(
    st.floats(min_value=1e-3, max_value=1e3),
    st.floats(min_value=0.0, exclude_min=True, allow_infinity=False),
    st.sampled_from([1e308, 5e-324]),
)


def expected_class(parts: list[tuple[str, float]], u: float) -> str:
    """The class whose share of [0, 1) holds u: part i owns (C(i-1)/T, C(i)/T], computed exactly."""
    total = sum(Fraction(weight) for _, weight in parts)
    bound = Fraction(0)
    for name, weight in parts:
        bound += Fraction(weight)
        if Fraction(u) <= bound / total:
            return name
    raise AssertionError("u is below 1")


@BOUNDED
@given(
    st.lists(st.tuples(st.sampled_from(PRIORITIES), weights), min_size=1, max_size=4),
    st.integers(0, 2**32),
)
@example([("critical", 1e308), ("batch", 1e308)], 0)
def test_every_draw_falls_in_its_class_share(parts: list[tuple[str, float]], seed: int) -> None:
    """Seeded, the mix draws the class whose weight share of [0, 1) holds the stream's
    uniform number: each class is drawn with probability weight / total."""
    choose = parse_priorities(",".join(f"{name}:{weight!r}" for name, weight in parts), seed)
    stream = random.Random(seed)
    for _ in range(50):
        assert choose() == expected_class(parts, stream.random())
