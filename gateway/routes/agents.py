"""GET /v1/agents/profiles: the agent profiles the caller's tenant's events named."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from gateway.auth import Principal, require_principal
from gateway.openapi import responses
from state.agent_profiles import tenant_profiles

router = APIRouter(tags=["agents"])


class AgentProfileBody(BaseModel):
    agent_profile: str
    persona_ids: list[str] = Field(description="Personas the profile's events named.")
    universes: list[str] = Field(description="Universes the profile's events named.")
    sessions: int = Field(description="Sessions whose events named the profile.")
    first_seen: str = Field(description="Event time of its first event (to the minute).")
    last_seen: str = Field(description="Event time of its latest event (to the minute).")


class AgentProfilesBody(BaseModel):
    """Most recently seen first; from the events the write-through flow has taken in."""

    tenant: str
    profiles: list[AgentProfileBody]
    truncated: bool = Field(
        description="The tenant has more sessions than one answer reads; the oldest were not."
    )


def _time(ms: int) -> str:
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@router.get(
    "/v1/agents/profiles",
    response_model=AgentProfilesBody,
    summary="The agent profiles of the caller's tenant",
    responses=responses(401, 503),
)
async def agent_profiles(
    request: Request, principal: Principal = Depends(require_principal)
) -> AgentProfilesBody:
    """Derived from `X-Agent-Profile` / `agent_profile` on the tenant's events (no other store)."""
    found = await tenant_profiles(request.app.state.state_reader, principal.tenant)
    return AgentProfilesBody(
        tenant=principal.tenant,
        profiles=[
            AgentProfileBody(
                agent_profile=p.agent_profile,
                persona_ids=list(p.persona_ids),
                universes=list(p.universes),
                sessions=p.sessions,
                first_seen=_time(p.first_seen_ms),
                last_seen=_time(p.last_seen_ms),
            )
            for p in found.profiles
        ],
        truncated=found.truncated,
    )
