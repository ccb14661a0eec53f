"""After start-up the serving process freezes what exists and collects the young rarely."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from carebench.server.gc_tuning import YOUNG_THRESHOLD, settle_after_startup


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_gc")
def test_settle_freezes_survivors_and_raises_the_young_threshold() -> None:
    """Start-up objects move to the permanent generation; only generation 0's threshold moves."""
    _, middle, old = gc.get_threshold()
    settle_after_startup()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (YOUNG_THRESHOLD, middle, old)
