"""The overview page's lag: one read of the plane's groups at a time, and a short history of them.

Read on demand, not in the background: a gateway nobody watches reads nothing. A read is
taken at most every `min_interval_s`, whoever asks (several open pages share it), and each
successful read adds one point per group and topic to a ring buffer of `capacity` points.
The history therefore covers the time someone watched, at most `capacity` reads; the long
history lives in Prometheus (the lag exporter's series).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from state.lag import LagReport

MIN_INTERVAL_S = 2.0
CAPACITY = 180  # 6 min at one read per 2 s, more when the page polls less often


@dataclass(frozen=True)
class LagPoint:
    """Total lag of one group on one topic at one read."""

    at_ms: int
    offsets: int
    seconds: float | None  # the most any partition waited; None when none could be timed


@dataclass
class LagView:
    """What the page shows: the last successful read, the last error, the history."""

    report: LagReport | None
    error: str | None
    history: dict[tuple[str, str], list[LagPoint]] = field(default_factory=dict)


def lag_points(report: LagReport) -> dict[tuple[str, str], LagPoint]:
    """Per (group, topic): partitions' lag summed, the largest wait in seconds."""
    offsets: dict[tuple[str, str], int] = {}
    seconds: dict[tuple[str, str], float | None] = {}
    for row in report.partitions:
        key = (row.group, row.offsets.topic)
        offsets[key] = offsets.get(key, 0) + row.offsets.lag
        known = [s for s in (seconds.get(key), row.seconds) if s is not None]
        seconds[key] = max(known) if known else None
    return {key: LagPoint(report.taken_at_ms, n, seconds[key]) for key, n in offsets.items()}


class LagWatch:
    """Calls `read` (blocking, run in a thread) at most every `min_interval_s`."""

    def __init__(
        self,
        read: Callable[[], LagReport],
        *,
        min_interval_s: float = MIN_INTERVAL_S,
        capacity: int = CAPACITY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self.min_interval_s = min_interval_s
        self.capacity = capacity
        self._clock = clock
        self._lock = asyncio.Lock()
        self._last_try: float | None = None
        self._report: LagReport | None = None
        self._error: str | None = None
        self._history: dict[tuple[str, str], deque[LagPoint]] = {}

    async def view(self) -> LagView:
        async with self._lock:  # one read at a time; the others wait for it and share it
            now = self._clock()
            if self._last_try is None or now - self._last_try >= self.min_interval_s:
                self._last_try = now
                await self._refresh()
            history = {key: list(points) for key, points in self._history.items()}
            return LagView(self._report, self._error, history)

    async def _refresh(self) -> None:
        try:
            report = await asyncio.to_thread(self._read)
        except Exception as exc:
            # Broker away, a timeout, a client error: the page says so and keeps the last read.
            self._error = f"{type(exc).__name__}: {exc}"
            return
        self._report, self._error = report, None
        for key, point in lag_points(report).items():
            self._history.setdefault(key, deque(maxlen=self.capacity)).append(point)
