"""A bounded queue with priority classes: critical before standard before batch.

Policy:
* dispatch serves the most urgent non-empty class, except that every `fairness_period`-th
  dispatch serves the longest-waiting request of any class, so batch work always gets at
  least 1/`fairness_period` of the dispatches while it waits (no starvation);
* when the queue is full, an arriving request sheds the newest request of a strictly less
  urgent class (batch first); if there is none, the arriving request is the one refused.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

from carebench.models import PRIORITIES

T = TypeVar("T")

FAIRNESS_PERIOD = 8


class ClassQueue(Generic[T]):
    """FIFO within a class, priority across classes, bounded in total."""

    def __init__(self, capacity: int, fairness_period: int = FAIRNESS_PERIOD) -> None:
        self.capacity = capacity
        self.fairness_period = fairness_period
        self._lanes: list[deque[tuple[int, T]]] = [deque() for _ in PRIORITIES]
        self._arrivals = itertools.count()
        self._dispatches = 0
        self._size = 0  # kept rather than summed: len() runs on every dispatch
        self.shed = 0

    def __len__(self) -> int:
        return self._size

    def __bool__(self) -> bool:
        return self._size > 0

    def depth_by_class(self) -> dict[str, int]:
        return {name: len(lane) for name, lane in zip(PRIORITIES, self._lanes, strict=True)}

    def push(self, item: T, rank: int) -> tuple[bool, T | None]:
        """Queue `item` in class `rank`: (accepted, the item it shed to make room, if any)."""
        shed: T | None = None
        if self._size >= self.capacity:
            shed = self._shed_below(rank)
            if shed is None:
                return False, None
            self._size -= 1
        self._lanes[rank].append((next(self._arrivals), item))
        self._size += 1
        return True, shed

    def _shed_below(self, rank: int) -> T | None:
        for lane in reversed(self._lanes[rank + 1 :]):
            if lane:
                self.shed += 1
                return lane.pop()[1]
        return None

    def pop(self, newest: bool = False) -> T:
        """The next item to serve (raises IndexError when empty).

        The class is chosen as the module doc says; within it the oldest item is served, or
        with `newest` the newest (LIFO, codel while congested; a fairness turn then still
        picks the class whose oldest item waited longest, and serves that class's newest).
        """
        if not self._size:
            raise IndexError("pop from an empty ClassQueue")
        self._dispatches += 1
        self._size -= 1
        if self._dispatches % self.fairness_period == 0:
            lanes = [lane for lane in self._lanes if lane]
            lane = min(lanes, key=lambda lane: lane[0][0])
            return (lane.pop() if newest else lane.popleft())[1]
        for lane in self._lanes:
            if lane:
                return (lane.pop() if newest else lane.popleft())[1]
        raise AssertionError("unreachable: size says an item is queued")

    def remove_oldest_while(self, expired: Callable[[T], bool]) -> list[T]:
        """Remove each class's oldest items for as long as `expired` holds for them.

        Items of a class are kept in arrival order, so for a test on age this removes exactly
        the items past it, looking at only one more item per class.
        """
        removed: list[T] = []
        for lane in self._lanes:
            while lane and expired(lane[0][1]):
                removed.append(lane.popleft()[1])
        self._size -= len(removed)
        return removed

    def drain(self) -> list[T]:
        """Remove and return everything, most urgent first."""
        items = [item for lane in self._lanes for _, item in lane]
        for lane in self._lanes:
            lane.clear()
        self._size = 0
        return items
