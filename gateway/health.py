"""Dependency health: probe Kafka, Redis, Postgres and the memory service at once, then classify."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

import httpx
import psycopg
from confluent_kafka.admin import AdminClient
from redis.asyncio import Redis

from soma.metrics import GATEWAY_COMPONENT_HEALTH, GATEWAY_HEALTH_CHECK_SECONDS
from soma.settings import Settings


class Status(StrEnum):
    OK = "ok"
    DEGRADED = "degraded"
    DOWN = "down"


_RANK = {Status.OK: 0, Status.DEGRADED: 1, Status.DOWN: 2}
# Components whose failure alone degrades the gateway but does not take it out of rotation:
# writes wait in the outbox for the memory service; the replica catches up from the WAL;
# without Redis recalls are answered uncached (the recall cache is its only use here).
REDIS = "redis"
DEGRADE_ONLY = frozenset({"memory_service", "replication", REDIS})
# A probe that answers but takes more than this share of its timeout is degraded: the next
# request through that dependency is likely to be slow too.
_SLOW_SHARE = 0.5
MEMORY_SERVICE = "memory_service"


@dataclass(frozen=True)
class ComponentHealth:
    status: Status
    latency_ms: float
    error: str | None = None


@dataclass(frozen=True)
class HealthReport:
    status: Status
    components: dict[str, ComponentHealth]

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "components": {
                name: {**asdict(c), "status": c.status.value} for name, c in self.components.items()
            },
        }


def overall_status(components: dict[str, ComponentHealth]) -> Status:
    """The worst component status; the memory service, the replication or Redis being down
    alone only degrades the plane: accepted writes wait in the outbox, the replica catches up
    from the WAL, recalls skip the cache."""
    worst = Status.OK
    for name, health in components.items():
        status = health.status
        if name in DEGRADE_ONLY and status is Status.DOWN:
            status = Status.DEGRADED
        if _RANK[status] > _RANK[worst]:
            worst = status
    return worst


async def _timed(name: str, probe: Awaitable[Status], timeout_s: float) -> ComponentHealth:
    started = time.perf_counter()
    try:
        status = await asyncio.wait_for(probe, timeout=timeout_s)
        error = None
    except TimeoutError:
        status, error = Status.DOWN, f"no answer within {timeout_s}s"
    except Exception as exc:  # any failure of a probe is that component being down
        status, error = Status.DOWN, f"{type(exc).__name__}: {exc}"
    elapsed = time.perf_counter() - started
    if status is Status.OK and elapsed > timeout_s * _SLOW_SHARE:
        status, error = Status.DEGRADED, f"slow: {elapsed * 1000:.0f} ms"
    GATEWAY_HEALTH_CHECK_SECONDS.labels(component=name).observe(elapsed)
    GATEWAY_COMPONENT_HEALTH.labels(component=name).set(_RANK[status])
    return ComponentHealth(status, round(elapsed * 1000, 1), error)


async def kafka_probe(admin: AdminClient, timeout_s: float) -> Status:
    # list_topics blocks in librdkafka: run it in a thread so the other probes proceed.
    metadata = await asyncio.to_thread(admin.list_topics, timeout=timeout_s)
    return Status.OK if metadata.brokers else Status.DOWN


async def redis_probe(redis: Redis) -> Status:
    return Status.OK if await redis.ping() else Status.DOWN


def _postgres_select_one(dsn: str, timeout_s: float) -> Status:
    # libpq counts connect_timeout in whole seconds (and treats 1 as 2); the caller's
    # wait_for bounds the answer, this only bounds how long the thread lingers.
    with psycopg.connect(dsn, connect_timeout=max(2, math.ceil(timeout_s))) as conn:
        row = conn.execute("SELECT 1").fetchone()
    return Status.OK if row == (1,) else Status.DOWN


async def postgres_probe(dsn: str, timeout_s: float) -> Status:
    return await asyncio.to_thread(_postgres_select_one, dsn, timeout_s)


async def memory_service_probe(base_url: str, timeout_s: float) -> Status:
    async with httpx.AsyncClient(timeout=timeout_s) as client:
        response = await client.get(f"{base_url.rstrip('/')}/health")
    if response.status_code >= 500:
        return Status.DOWN
    if response.status_code >= 400:
        return Status.DEGRADED
    try:
        body = response.json()
    except ValueError:
        return Status.OK
    # SomaBrain reports {"ok": false, ...} or a status string when a backend of its own is down.
    if isinstance(body, dict) and (
        body.get("ok") is False or body.get("status") in ("degraded", "down", "error")
    ):
        return Status.DEGRADED
    return Status.OK


async def check_health(settings: Settings, admin: AdminClient, redis: Redis) -> HealthReport:
    """Probe every dependency concurrently, each bounded by settings.health_timeout_s."""
    timeout = settings.health_timeout_s
    probes: dict[str, Callable[[], Awaitable[Status]]] = {
        "kafka": lambda: kafka_probe(admin, timeout),
        REDIS: lambda: redis_probe(redis),
        "postgres": lambda: postgres_probe(settings.postgres_dsn, timeout),
    }
    if settings.base_url:
        base_url = settings.base_url
        probes[MEMORY_SERVICE] = lambda: memory_service_probe(base_url, timeout)
    results = await asyncio.gather(
        *(_timed(name, probe(), timeout) for name, probe in probes.items())
    )
    components = dict(zip(probes, results, strict=True))
    return HealthReport(overall_status(components), components)
