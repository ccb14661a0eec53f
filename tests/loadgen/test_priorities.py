"""The load generator's priority mix: parsing, weights, and per-class results."""

from __future__ import annotations

import itertools
import time
from collections import Counter

import pytest

from carebench.errors import ConfigError
from carebench.loadgen.engine import Engine
from carebench.loadgen.priorities import parse_priorities
from carebench.loadgen.results import RunRecorder
from tests.loadgen.fakes import ScriptedChannel


def test_no_spec_sends_no_header() -> None:
    """Without --priorities every request goes without X-Request-Priority."""
    assert parse_priorities(None)() is None


def test_weights_shape_the_mix() -> None:
    """critical:1,batch:3 draws about a quarter critical, reproducibly with a seed."""
    choose = parse_priorities("critical:1,batch:3", seed=7)
    counts = Counter(choose() for _ in range(8000))
    assert set(counts) == {"critical", "batch"}
    assert 1700 < counts["critical"] < 2300
    first = parse_priorities("critical:1,batch:3", seed=7)
    second = parse_priorities("critical:1,batch:3", seed=7)
    assert [first() for _ in range(20)] == [second() for _ in range(20)]


@pytest.mark.parametrize("spec", ["vip:1", "critical", "critical:x", "batch:0", "standard:-2"])
def test_bad_specs_are_config_errors(spec: str) -> None:
    """Unknown classes and missing or non-positive weights name the flag."""
    with pytest.raises(ConfigError, match="--priorities"):
        parse_priorities(spec)


async def test_results_are_broken_down_by_class() -> None:
    """Each request is counted under its class; successes carry the class's latency."""
    state = {"active": 0, "peak": 0}
    channel = ScriptedChannel(itertools.cycle([200, 503]), state)
    classes = itertools.cycle(["critical", "critical", "batch", "batch"])
    engine = Engine(
        [channel],
        lambda: "P1",
        5.0,
        RunRecorder(time.perf_counter()),
        choose_priority=classes.__next__,
    )
    await engine.closed_loop(8)
    by_priority = engine.recorder.summary(1.0)["by_priority"]
    assert by_priority is not None
    assert set(by_priority) == {"critical", "batch"}
    for name in ("critical", "batch"):
        assert by_priority[name]["total_requests"] == 4
        assert by_priority[name]["outcomes"]["success"] == 2
        assert by_priority[name]["rejection_rate_percent"] == 50.0
        assert by_priority[name]["success_latency_ms"]["max"] > 0
