"""The replication component of /healthz: lag and replica status as the replication workers say."""

from __future__ import annotations

import asyncio
import time

from gateway.health import ComponentHealth, Status
from soma.metrics import GATEWAY_COMPONENT_HEALTH, GATEWAY_HEALTH_CHECK_SECONDS
from state.errors import StateUnavailable
from state.flow_health import flow_health
from state.reads import StateReader

REPLICATION = "replication"
_STATUS = {"ok": Status.OK, "degraded": Status.DEGRADED, "down": Status.DOWN}
_RANK = {Status.OK: 0, Status.DEGRADED: 1, Status.DOWN: 2}


async def replication_component(reader: StateReader, timeout_s: float) -> ComponentHealth | None:
    """The component, or None when no replication flow ever ran against this plane."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout_s):
            health = await flow_health(reader, REPLICATION)
        if health is None:
            return None
        status, error = _STATUS.get(health.status, Status.DOWN), health.detail
    except (TimeoutError, StateUnavailable) as exc:
        status, error = Status.DOWN, f"cannot ask the replication workers: {exc}"
    elapsed = time.perf_counter() - started
    GATEWAY_HEALTH_CHECK_SECONDS.labels(component=REPLICATION).observe(elapsed)
    GATEWAY_COMPONENT_HEALTH.labels(component=REPLICATION).set(_RANK[status])
    return ComponentHealth(status, round(elapsed * 1000, 1), error)
