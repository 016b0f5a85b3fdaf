"""HealthMonitor on an injected clock: breaker guard, modes, one log line and metric per change."""

from __future__ import annotations

import asyncio
import logging

import pytest
from prometheus_client import REGISTRY

from processors.backend_policy import BreakerPolicy, BreakerState, HealthMode, ProbePolicy
from state.memory.errors import BackendRejected, BackendUnavailable
from state.memory.health import HealthMonitor


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def _fail() -> None:
    raise BackendUnavailable("boom", backend="unit", reason="server_error")


async def _ok() -> str:
    return "fine"


async def test_modes_follow_failures_and_each_change_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend = "unit-modes"
    clock = FakeClock()
    monitor = HealthMonitor(
        backend, breaker=BreakerPolicy(failure_threshold=2, reset_timeout_s=10), clock=clock
    )
    caplog.set_level(logging.WARNING, logger="state.memory.health")
    with pytest.raises(BackendUnavailable):
        await monitor.call("remember", _fail)
    assert monitor.mode is HealthMode.DEGRADED
    with pytest.raises(BackendUnavailable):
        await monitor.call("remember", _fail)
    assert monitor.mode is HealthMode.DOWN and monitor.breaker.state is BreakerState.OPEN
    with pytest.raises(BackendUnavailable, match="circuit open") as refused:
        await monitor.call("remember", _ok)
    assert refused.value.reason == "circuit_open"
    clock.now += 10
    assert await monitor.call("remember", _ok) == "fine"
    assert monitor.mode is HealthMode.NORMAL
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        f"memory backend {backend}: normal -> degraded",
        f"memory backend {backend}: breaker closed -> open",
        f"memory backend {backend}: degraded -> down",
        f"memory backend {backend}: breaker open -> half_open",
        f"memory backend {backend}: breaker half_open -> closed",
        f"memory backend {backend}: down -> normal",
    ]
    assert _value("soma_memory_backend_mode", backend=backend) == 0
    assert _value(
        "soma_memory_backend_breaker_transitions_total",
        backend=backend, from_state="closed", to_state="open",
    ) == 1  # fmt: skip
    assert _value(
        "soma_memory_backend_calls_total",
        backend=backend, operation="remember", outcome="short_circuited",
    ) == 1  # fmt: skip


async def test_a_rejection_or_rate_limit_does_not_open_the_breaker() -> None:
    monitor = HealthMonitor("unit-reject", breaker=BreakerPolicy(failure_threshold=1))

    async def reject() -> None:
        raise BackendRejected("bad", backend="unit", field="value", reason="invalid")

    async def throttle() -> None:
        raise BackendUnavailable("slow down", backend="unit", reason="rate_limited")

    for attempt in (reject, throttle):
        with pytest.raises((BackendRejected, BackendUnavailable)):
            await monitor.call("remember", attempt)
    assert monitor.breaker.state is BreakerState.CLOSED


async def test_probe_timeout_is_down_and_slow_probe_is_degraded() -> None:
    clock = FakeClock()
    monitor = HealthMonitor(
        "unit-probe", probe=ProbePolicy(timeout_s=0.05, degraded_latency_s=0.02), clock=clock
    )

    async def hang() -> str:
        await asyncio.Event().wait()
        return "never"

    async def slow() -> str:
        clock.now += 0.03  # the injected clock says the probe took 30 ms
        return "ok but slow"

    assert (await monitor.probe(hang)).mode is HealthMode.DOWN
    health = await monitor.probe(slow)
    assert health.mode is HealthMode.DEGRADED and health.latency_s == pytest.approx(0.03)
    assert (await monitor.probe(_ok)).mode is HealthMode.NORMAL
