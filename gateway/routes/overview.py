"""GET /v1/admin/overview: what the plane overview page shows, in one answer.

Consumer lag of every plane group (with a short history, gateway/lag_watch.py), dead-letter
depth, the outbox backlog and the memory backend's breaker. Each part is read on its own and
says when it could not be read, so one dependency down never blanks the others.
"""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from gateway.auth import PLATFORM_ADMIN_ROLE, Principal, require_admin
from gateway.backpressure import STALE_AFTER_S, OutboxBackpressure
from gateway.lag_watch import LagView, LagWatch
from gateway.openapi import responses
from soma.lag_exporter import dead_letter_topics, plane_groups
from soma.settings import Settings
from state.lag import GroupTopics, LagReport, read_lag_once
from state.memory.backend import MemoryBackend

router = APIRouter(prefix="/v1/admin", tags=["admin"])


class PartitionLagRow(BaseModel):
    group: str
    flow: str
    topic: str
    partition: int
    committed: int | None = Field(description="Null: the group never committed here.")
    end: int
    lag: int
    lag_seconds: float | None


class TenantLagRowBody(BaseModel):
    group: str
    topic: str
    tenant: str
    lag: int
    lag_seconds: float | None
    exact: bool = Field(description="False: estimated from a sample (docs/observability.md).")


class LagPointBody(BaseModel):
    at_ms: int
    lag: int
    lag_seconds: float | None


class LagSeries(BaseModel):
    group: str
    topic: str
    points: list[LagPointBody] = Field(description="Oldest first, one per read.")


class LagSection(BaseModel):
    taken_at_ms: int | None = Field(description="When the values shown were read.")
    error: str | None = Field(description="Why the last read failed (values are older).")
    partitions: list[PartitionLagRow]
    tenants: list[TenantLagRowBody] = Field(description="The caller's tenant's (all: platform).")
    history: list[LagSeries]


class DeadLetterDepth(BaseModel):
    topic: str
    depth: int = Field(description="Records the dead-letter topic holds (end - low).")


class OutboxTenant(BaseModel):
    tenant: str
    pending: int
    oldest_pending_age_s: float


class OutboxSection(BaseModel):
    read_age_s: float | None = Field(description="Age of the drain's last answer; null: none.")
    error: str | None
    modes: list[str]
    tenants: list[OutboxTenant]


class BreakerSection(BaseModel):
    backend: str
    mode: str = Field(description="normal, degraded or down.")
    breaker: str = Field(description="closed, open or half_open.")
    detail: str


class Overview(BaseModel):
    lag: LagSection
    dead_letters: list[DeadLetterDepth]
    outbox: OutboxSection
    memory_backend: BreakerSection | None = Field(description="Null: the probe did not answer.")


def lag_watch(settings: Settings) -> LagWatch:
    """The gateway's watch over every plane group's lag and every dead-letter topic."""
    plane: list[list[GroupTopics]] = []  # the flow specs, read once, on the first read

    def read() -> LagReport:
        if not plane:
            plane.append(plane_groups(settings))
        dlqs = dead_letter_topics(settings)
        return read_lag_once(settings, plane[0], dlqs, timeout_s=settings.health_timeout_s * 5)

    return LagWatch(read)


def _lag_section(view: LagView, principal: Principal, dlqs: set[str]) -> LagSection:
    everyone = PLATFORM_ADMIN_ROLE in principal.roles
    report = view.report
    partitions = [
        PartitionLagRow(
            group=p.group,
            flow=p.flow,
            topic=p.offsets.topic,
            partition=p.offsets.partition,
            committed=p.offsets.committed,
            end=p.offsets.end,
            lag=p.offsets.lag,
            lag_seconds=None if p.seconds is None else round(p.seconds, 3),
        )
        for p in (report.partitions if report else [])
    ]
    tenants = [
        TenantLagRowBody(
            group=t.group,
            topic=t.topic,
            tenant=t.tenant,
            lag=t.offsets,
            lag_seconds=None if t.seconds is None else round(t.seconds, 3),
            exact=t.exact,
        )
        for t in (report.tenants if report else [])
        if everyone or t.tenant == principal.tenant
    ]
    history = [
        LagSeries(
            group=group,
            topic=topic,
            points=[
                LagPointBody(
                    at_ms=p.at_ms,
                    lag=p.offsets,
                    lag_seconds=None if p.seconds is None else round(p.seconds, 3),
                )
                for p in points
            ],
        )
        for (group, topic), points in sorted(view.history.items())
        if topic not in dlqs
    ]
    return LagSection(
        taken_at_ms=report.taken_at_ms if report else None,
        error=view.error,
        partitions=partitions,
        tenants=tenants,
        history=history,
    )


def _age_s(now_ms: int, then_ms: int) -> float:
    return round(max(0, now_ms - then_ms) / 1000, 1)


def _outbox_section(backpressure: OutboxBackpressure, principal: Principal) -> OutboxSection:
    summary = backpressure.summary
    if summary is None:
        return OutboxSection(
            read_age_s=None, error="the outbox drain has not answered", modes=[], tenants=[]
        )
    age = time.monotonic() - backpressure.seen_at
    everyone = PLATFORM_ADMIN_ROLE in principal.roles
    return OutboxSection(
        read_age_s=round(age, 1),
        error=f"no answer from the outbox drain for {age:.0f} s" if age > STALE_AFTER_S else None,
        modes=sorted(summary.modes),
        tenants=[
            OutboxTenant(
                tenant=tenant,
                pending=backlog.pending,
                oldest_pending_age_s=_age_s(summary.at_ms, backlog.oldest_parked_ms),
            )
            for tenant, backlog in sorted(summary.tenants.items())
            if everyone or tenant == principal.tenant
        ],
    )


async def _breaker(backend: MemoryBackend) -> BreakerSection | None:
    try:
        async with asyncio.timeout(3.0):  # the probe bounds itself (1-1.5 s); this is a backstop
            health = await backend.health()
    except Exception:
        return None
    return BreakerSection(
        backend=health.backend,
        mode=health.mode.value,
        breaker=health.breaker.value,
        detail=health.detail,
    )


@router.get(
    "/overview",
    response_model=Overview,
    summary="Lag, dead letters, outbox and breaker of the plane, for the overview page",
    responses=responses(401, 403),
)
async def overview(request: Request, principal: Principal = Depends(require_admin)) -> Overview:
    """Lag per group/topic/partition (all admins: it is the plane's), per tenant (the caller's;
    a platform admin's: every tenant), a short lag history per group and topic, dead-letter
    depth, the outbox backlog (the caller's tenant, or every tenant) and the memory breaker."""
    state = request.app.state
    watch: LagWatch = state.lag_watch
    view, breaker = await asyncio.gather(watch.view(), _breaker(state.memory_backend))
    dlqs = set(dead_letter_topics(state.settings))
    report = view.report
    dead_letters = [
        DeadLetterDepth(topic=topic, depth=marks.depth)
        for topic, marks in sorted((report.topics if report else {}).items())
        if topic in dlqs
    ]
    return Overview(
        lag=_lag_section(view, principal, dlqs),
        dead_letters=dead_letters,
        outbox=_outbox_section(state.backpressure, principal),
        memory_backend=breaker,
    )
