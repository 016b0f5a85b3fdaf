"""A memory backend for a long-running worker: opened once, probed in the background, closed last.

Calls already keep the backend's breaker and mode current; the background probe adds what calls
cannot see: a backend that went down (or came back) while nothing was sent, so a flow can route
writes to the outbox without first waiting for a call to fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from processors.backend_policy import BackendHealth, HealthMode
from soma.settings import Settings
from state.memory.backend import MemoryBackend

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProbeSchedule:
    """How often the background probe runs: often while unwell, rarely while normal."""

    normal_s: float = 5.0
    unwell_s: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.unwell_s <= self.normal_s:
            raise ValueError("need 0 < unwell_s <= normal_s")

    def interval(self, health: BackendHealth | None) -> float:
        if health is None or health.mode is not HealthMode.NORMAL:
            return self.unwell_s
        return self.normal_s


PROBE_SCHEDULE_DEFAULT = ProbeSchedule()


class WatchedBackend:
    """A backend plus the last health its background probe (or its calls) reported."""

    def __init__(
        self, backend: MemoryBackend, schedule: ProbeSchedule = PROBE_SCHEDULE_DEFAULT
    ) -> None:
        self.backend = backend
        self.schedule = schedule
        self._last: BackendHealth | None = None

    def health(self) -> BackendHealth | None:
        """The freshest verdict without probing: the monitor's snapshot when the backend has
        one (every call updates it), else the last probe's answer; None before either."""
        monitor = getattr(self.backend, "monitor", None)
        if monitor is not None:
            snapshot: BackendHealth = monitor.snapshot()
            return snapshot
        return self._last

    async def probe_forever(self) -> None:
        """Probe, then sleep the schedule's interval, until cancelled."""
        while True:
            try:
                self._last = await self.backend.health()
            except Exception:  # a probe must never take the worker down
                log.exception("memory backend %s: health probe failed", self.backend.name)
            await asyncio.sleep(self.schedule.interval(self._last))


@contextlib.asynccontextmanager
async def watched_backend(
    settings: Settings, schedule: ProbeSchedule = PROBE_SCHEDULE_DEFAULT
) -> AsyncIterator[WatchedBackend]:
    """The process's memory backend (`memory_backend(settings)`), probed until the block ends."""
    from state.memory.factory import memory_backend  # the backends' clients load only here

    watched = WatchedBackend(memory_backend(settings), schedule)
    task = asyncio.create_task(watched.probe_forever(), name="memory-health-probe")
    try:
        yield watched
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await watched.backend.aclose()
