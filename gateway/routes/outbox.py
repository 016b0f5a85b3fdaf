"""GET /v1/outbox: the caller's writes waiting for the memory service, from the drain's state."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from gateway.auth import PLATFORM_ADMIN_ROLE, Principal, require_principal
from gateway.backpressure import OutboxBackpressure
from gateway.openapi import responses
from processors.write_plan import rfc3339
from state.outbox import outbox_summary

router = APIRouter(tags=["memory"])


class TenantOutbox(BaseModel):
    tenant: str
    pending: int = Field(description="Writes waiting for the memory service.")
    oldest_pending_age_s: float = Field(description="Age of the oldest waiting write.")
    next_attempt_at: str = Field(description="When the drain next tries one of them.")
    max_attempts: int = Field(description="Most delivery attempts any waiting write has had.")
    drain_rate_per_s: float = Field(description="Writes delivered per second lately.")
    throttled: bool = Field(description="Memory writes are answered 429 until it shrinks.")


class OutboxBody(BaseModel):
    """The outbox as the drain's workers hold it right now."""

    tenants: list[TenantOutbox] = Field(description="Only tenants with waiting writes.")
    modes: list[str] = Field(description="The drain's modes: normal, degraded or down.")
    tenant_limit: int = Field(description="Backlog above which memory writes get 429.")


@router.get(
    "/v1/outbox",
    response_model=OutboxBody,
    summary="Memory writes waiting for the memory service",
    responses=responses(401, 503),
)
async def get_outbox(
    request: Request, principal: Principal = Depends(require_principal)
) -> OutboxBody:
    """The caller's tenant (a platform admin: every tenant), from the outbox drain's state."""
    state = request.app.state
    summary = await outbox_summary(state.state_reader)
    backpressure: OutboxBackpressure = state.backpressure
    limit = backpressure.policy.tenant_limit
    everyone = PLATFORM_ADMIN_ROLE in principal.roles
    now_ms = summary.at_ms
    rows = [
        TenantOutbox(
            tenant=tenant,
            pending=backlog.pending,
            oldest_pending_age_s=round(max(0, now_ms - backlog.oldest_parked_ms) / 1000, 3),
            next_attempt_at=rfc3339(datetime.fromtimestamp(backlog.next_attempt_ms / 1000, UTC)),
            max_attempts=backlog.max_attempts,
            drain_rate_per_s=round(backpressure.rates.rate(tenant), 3),
            throttled=backlog.pending > limit,
        )
        for tenant, backlog in sorted(summary.tenants.items())
        if everyone or tenant == principal.tenant
    ]
    return OutboxBody(tenants=rows, modes=sorted(summary.modes), tenant_limit=limit)
