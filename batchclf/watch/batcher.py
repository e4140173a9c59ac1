"""Dynamic batching: a pure, clock-injected queue that says when to run the model.

A batch goes out when it holds ``max_batch`` items or its oldest item has
waited ``max_latency`` seconds, whichever comes first.  The queue is
bounded: ``has_room()`` turns false at ``capacity`` so intake waits instead
of growing memory.
"""

from __future__ import annotations

from collections import deque
from typing import Callable, Generic, TypeVar

T = TypeVar("T")


class DynamicBatcher(Generic[T]):
    def __init__(self, max_batch: int, max_latency: float, clock: Callable[[], float], capacity: int | None = None):
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.max_batch = max_batch
        self.max_latency = max_latency
        self.clock = clock
        self.capacity = capacity or 4 * max_batch
        self._queue: deque[tuple[float, T]] = deque()

    def __len__(self) -> int:
        return len(self._queue)

    def has_room(self) -> bool:
        return len(self._queue) < self.capacity

    def add(self, item: T, arrived: float | None = None) -> None:
        """Queue an item; ``arrived`` (default: now) is when its latency clock started."""
        if not self.has_room():
            raise OverflowError("batcher is full; wait for a batch to be taken")
        self._queue.append((self.clock() if arrived is None else arrived, item))

    def ready(self) -> bool:
        if not self._queue:
            return False
        return len(self._queue) >= self.max_batch or self.clock() - self._queue[0][0] >= self.max_latency

    def take(self, force: bool = False) -> list[T]:
        """The next batch (at most ``max_batch`` items) if ready, or whatever is queued when ``force``."""
        if not (force or self.ready()):
            return []
        count = min(self.max_batch, len(self._queue))
        return [self._queue.popleft()[1] for _ in range(count)]

    def next_deadline(self) -> float | None:
        return self._queue[0][0] + self.max_latency if self._queue else None
