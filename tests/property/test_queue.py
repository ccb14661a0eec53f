"""Properties of ClassQueue, the bounded priority queue of the worker pools, checked against
a plain-list model of its documented policy by a hypothesis state machine that pushes, pops
and drains in any order.

What the model protects:
* dispatch serves the most urgent non-empty class, except that every `fairness_period`-th
  dispatch serves the class whose oldest request waited longest (no starvation); within the
  class the oldest request, or the newest with `newest` (codel's LIFO while congested);
* `remove_oldest_while` removes, class by class, the oldest requests for as long as the test
  holds, and nothing behind the first request it rejects;
* the queue never holds more than its capacity;
* a full queue sheds, for an arrival, the newest request of the least urgent class strictly
  less urgent than the arrival, and refuses the arrival when there is none (a batch request
  never evicts anyone; equal classes never evict each other);
* every pushed item ends exactly once as served, shed, refused, removed, drained or queued:
  none is lost or duplicated; depths per class, len(), bool() and the shed counter agree.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from carebench.models import PRIORITIES
from carebench.patterns.priority import ClassQueue
from tests.property.bounds import EXAMPLES


@dataclass(frozen=True, slots=True)
class Entry:
    arrival: int
    rank: int
    item: int


#: Which items `remove_oldest_while` finds expired (items are numbered in push order): all
#: older than some item (a deadline), a few, or all but a few (gaps behind expired heads).
ITEM_NUMBERS = st.integers(0, 60)
expiry_tests = st.one_of(
    ITEM_NUMBERS.map(lambda oldest_kept: set(range(oldest_kept))),
    st.sets(ITEM_NUMBERS),
    st.sets(ITEM_NUMBERS, max_size=5).map(lambda kept: set(range(61)) - kept),
)


class ClassQueueMachine(RuleBasedStateMachine):
    """Drives a ClassQueue and a list of entries side by side."""

    def __init__(self) -> None:
        super().__init__()
        self.queue: ClassQueue[int] = ClassQueue(0)
        self.model: list[Entry] = []
        self.capacity = 0
        self.period = 1
        self.dispatches = 0
        self.arrivals = itertools.count()
        self.items = itertools.count()
        self.pushed: list[int] = []
        self.served: list[int] = []
        self.shed: list[int] = []
        self.refused: list[int] = []
        self.drained: list[int] = []
        self.removed: list[int] = []

    @initialize(capacity=st.integers(0, 8), period=st.integers(1, 6))
    def build(self, capacity: int, period: int) -> None:
        self.queue = ClassQueue(capacity, fairness_period=period)
        self.capacity, self.period = capacity, period

    @rule(rank=st.integers(0, len(PRIORITIES) - 1))
    def push(self, rank: int) -> None:
        item = next(self.items)
        self.pushed.append(item)
        expected_victim: Entry | None = None
        if len(self.model) >= self.capacity:
            less_urgent = [entry for entry in self.model if entry.rank > rank]
            if not less_urgent:
                assert self.queue.push(item, rank) == (False, None)
                self.refused.append(item)
                return
            least_urgent = max(entry.rank for entry in less_urgent)
            expected_victim = max(
                (entry for entry in less_urgent if entry.rank == least_urgent),
                key=lambda entry: entry.arrival,
            )
            self.model.remove(expected_victim)
            self.shed.append(expected_victim.item)
        accepted, victim = self.queue.push(item, rank)
        assert accepted
        assert victim == (None if expected_victim is None else expected_victim.item)
        self.model.append(Entry(next(self.arrivals), rank, item))

    @precondition(lambda self: self.model)
    @rule(newest=st.booleans())
    def pop(self, newest: bool) -> None:
        self.dispatches += 1
        if self.dispatches % self.period == 0:
            # A fairness turn: the class whose oldest item waited longest.
            rank = min(self.model, key=lambda entry: entry.arrival).rank
        else:
            rank = min(entry.rank for entry in self.model)
        lane = [entry for entry in self.model if entry.rank == rank]
        expected = lane[-1] if newest else lane[0]
        assert self.queue.pop(newest=newest) == expected.item
        self.model.remove(expected)
        self.served.append(expected.item)

    @rule(expired=expiry_tests)
    def remove_oldest_while(self, expired: set[int]) -> None:
        expected: list[int] = []
        for rank in range(len(PRIORITIES)):
            for entry in [entry for entry in self.model if entry.rank == rank]:
                if entry.item not in expired:
                    break
                expected.append(entry.item)
                self.model.remove(entry)
        assert self.queue.remove_oldest_while(expired.__contains__) == expected
        self.removed.extend(expected)

    @precondition(lambda self: not self.model)
    @rule()
    def pop_empty(self) -> None:
        with pytest.raises(IndexError):
            self.queue.pop()

    @rule()
    def drain(self) -> None:
        expected = [entry.item for entry in sorted(self.model, key=lambda e: (e.rank, e.arrival))]
        assert self.queue.drain() == expected
        self.drained.extend(expected)
        self.model.clear()

    @invariant()
    def bounded_and_consistent(self) -> None:
        assert len(self.queue) == len(self.model) <= self.capacity
        assert bool(self.queue) is bool(self.model)
        assert self.queue.depth_by_class() == {
            name: sum(entry.rank == rank for entry in self.model)
            for rank, name in enumerate(PRIORITIES)
        }
        assert self.queue.shed == len(self.shed)

    @invariant()
    def nothing_lost_or_duplicated(self) -> None:
        queued = [entry.item for entry in self.model]
        ends = self.served + self.shed + self.refused + self.drained + self.removed + queued
        assert sorted(ends) == self.pushed


ClassQueueMachine.TestCase.settings = settings(
    max_examples=EXAMPLES, stateful_step_count=50, deadline=None, database=None
)
test_class_queue_follows_its_policy = ClassQueueMachine.TestCase
