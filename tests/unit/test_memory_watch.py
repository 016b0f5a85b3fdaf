"""The watched backend: probed often while unwell, and its verdict read without probing."""

from __future__ import annotations

import pytest

from processors.backend_policy import BackendHealth, BreakerState, HealthMode
from state.memory.errors import BackendUnavailable
from state.memory.health import HealthMonitor
from state.memory.watch import ProbeSchedule, WatchedBackend


def health(mode: HealthMode) -> BackendHealth:
    return BackendHealth("postgres", mode, "probe", None, BreakerState.CLOSED)


def test_the_probe_runs_often_while_the_backend_is_unwell() -> None:
    schedule = ProbeSchedule(normal_s=5.0, unwell_s=1.0)
    assert schedule.interval(health(HealthMode.NORMAL)) == 5.0
    assert schedule.interval(health(HealthMode.DEGRADED)) == 1.0
    assert schedule.interval(health(HealthMode.DOWN)) == 1.0
    assert schedule.interval(None) == 1.0  # not probed yet: find out soon
    with pytest.raises(ValueError):
        ProbeSchedule(normal_s=1.0, unwell_s=2.0)


class Backend:
    """The two attributes WatchedBackend reads of a backend."""

    name = "postgres"

    def __init__(self) -> None:
        self.monitor = HealthMonitor("postgres", clock=lambda: 0.0)


async def test_health_is_the_monitors_verdict_which_every_call_keeps_current() -> None:
    backend = Backend()
    watched = WatchedBackend(backend)  # type: ignore[arg-type]
    first = watched.health()
    assert first is not None and first.mode is HealthMode.NORMAL

    async def refused() -> None:
        raise BackendUnavailable("connection refused", backend="postgres", reason="connect")

    for _ in range(3):  # three failed calls open the breaker (upstream's threshold)
        with pytest.raises(BackendUnavailable):
            await backend.monitor.call("remember_batch", refused)
    verdict = watched.health()
    assert verdict is not None and verdict.mode is HealthMode.DOWN
    assert verdict.breaker is BreakerState.OPEN
