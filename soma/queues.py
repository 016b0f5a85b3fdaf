"""Depth, high-water mark and capacity of the plane's bounded in-memory queues (soma_queue_*)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from soma.metrics import QUEUE_CAPACITY, QUEUE_DEPTH, QUEUE_HIGH_WATER


class QueueMeter:
    """Exports one queue as `soma_queue_*{queue=name}` (unless `export` is False); thread-safe.

    Either the owner counts items in and out (`add`, `remove`: the high-water mark is then
    exact), or it gives a `depth` function that is read at every scrape and whenever the owner
    calls `sample` (the mark is then the largest depth seen at those moments).
    """

    def __init__(
        self,
        name: str,
        capacity: int,
        depth: Callable[[], int] | None = None,
        *,
        export: bool = True,
    ) -> None:
        self.name, self.capacity, self.export = name, capacity, export
        self._depth_fn = depth
        self._count = 0
        self._high = 0
        self._lock = threading.Lock()
        if export:
            QUEUE_CAPACITY.labels(queue=name).set(capacity)
            QUEUE_HIGH_WATER.labels(queue=name)  # exported (0) before anything was queued
            QUEUE_DEPTH.labels(queue=name).set_function(self.sample)

    @property
    def high_water(self) -> int:
        return self._high

    def depth(self) -> int:
        return self._depth_fn() if self._depth_fn is not None else self._count

    def add(self, items: int = 1) -> int:
        """Count `items` in; returns the new depth."""
        with self._lock:
            self._count += items
            self._mark(self._count)
            return self._count

    def remove(self, items: int = 1) -> None:
        with self._lock:
            self._count -= items

    def observe(self, depth: int) -> None:
        """Record a depth seen by the owner (e.g. the size of a batch handed over)."""
        with self._lock:
            self._mark(depth)

    def sample(self) -> int:
        """The depth now, counted towards the high-water mark."""
        depth = self.depth()
        self.observe(depth)
        return depth

    def _mark(self, depth: int) -> None:
        if depth > self._high:
            self._high = depth
            if self.export:
                _raise_mark(self.name, depth)


# Several meters of one name may live in a process (tests build several gateways): the
# exported mark is the largest of them.
_marks: dict[str, int] = {}
_marks_lock = threading.Lock()


def _raise_mark(name: str, depth: int) -> None:
    with _marks_lock:
        if depth > _marks.get(name, 0):
            _marks[name] = depth
            QUEUE_HIGH_WATER.labels(queue=name).set(depth)
