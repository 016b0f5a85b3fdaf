"""GET /v1/health/memory: the memory plane's health, overall and per tenant, classified."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from gateway.auth import PLATFORM_ADMIN_ROLE, Principal, require_principal
from gateway.memory_health import MemoryHealth
from gateway.openapi import responses

router = APIRouter(tags=["operations"])

Status = Literal["ok", "degraded", "down"]
ComponentStatus = Literal["ok", "degraded", "down", "unknown"]


class MemoryComponent(BaseModel):
    """One signal. `unknown`: it could not be read (`error` says why); counts as degraded."""

    model_config = ConfigDict(extra="allow")  # the signal's numbers: seconds, pending, ...

    status: ComponentStatus
    error: str | None = Field(description="Why the signal could not be read, if it could not.")


class MemoryComponents(BaseModel):
    wal_lag: MemoryComponent = Field(
        description="The write-through group's lag on its sources: `seconds`, `offsets`."
    )
    replication_lag: MemoryComponent | None = Field(
        description="WAL to replica lag (`seconds`, `offsets`); null when no replication "
        "flow ever ran against this plane."
    )
    outbox: MemoryComponent = Field(
        description="Writes waiting for the memory service: `pending`, `oldest_age_s`."
    )
    dead_letters: MemoryComponent = Field(
        description="Plane: records the DLQ topics hold (`depth`); tenant: open entries of "
        "the dead-letter index (`open`, `at_least` when there are more than one page)."
    )
    backend: MemoryComponent = Field(
        description="The memory backend as the gateway sees it: `mode`, `breaker`, `detail`."
    )


class TenantMemoryHealth(BaseModel):
    tenant: str
    status: Status
    components: MemoryComponents


class MemoryHealthBody(BaseModel):
    """Worst component wins; thresholds are [degraded, down] and a value at one counts."""

    status: Status
    scope: Literal["tenant", "plane"] = Field(
        description="`tenant`: the caller's tenant only; `plane`: platform-admin, every tenant."
    )
    components: MemoryComponents
    tenants: list[TenantMemoryHealth] = Field(
        description="The caller's tenant, or (platform-admin) every tenant any signal names."
    )
    thresholds: dict[str, Any]


@router.get(
    "/v1/health/memory",
    response_model=MemoryHealthBody,
    summary="Memory plane health: WAL and replication lag, outbox, dead letters, backend",
    responses=responses(401),
)
async def memory_health(
    request: Request, principal: Principal = Depends(require_principal)
) -> dict[str, Any]:
    """200 whatever the status: a signal that cannot be read is `unknown` with its error."""
    health: MemoryHealth = request.app.state.memory_health
    everyone = PLATFORM_ADMIN_ROLE in principal.roles
    return await health.report(None if everyone else principal.tenant)
