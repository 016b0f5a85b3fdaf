"""POST /v1/session/message: the upstream SomaAgent01 endpoint, producing conversation.inbound."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Depends, Request, status
from pydantic import BaseModel, ConfigDict, Field

from gateway.context import EdgeContext, edge_context, utc_now_iso
from gateway.produce import build_records, delivery_body, send_records

router = APIRouter(tags=["session"])

TOPIC = "conversation.inbound"
UPSTREAM_VERSION = "sa01-v1"


class SessionMessage(BaseModel):
    """The upstream request body; content rules (lengths, roles) live in the event schema."""

    model_config = ConfigDict(extra="forbid")

    session_id: str | None = Field(None, description="Existing session; a new uuid when absent.")
    persona_id: str | None = Field(None, description="Persona; X-Persona-Id when absent.")
    message: str = Field(description="The message text (at most 65536 characters).")
    attachments: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)
    role: str = Field("user", description="user | assistant | system")


class Accepted(BaseModel):
    session_id: str
    event_id: str
    topic: str
    partition: int
    offset: int


def conversation_event(body: SessionMessage, edge: EdgeContext) -> dict[str, Any]:
    """The conversation_event for a message, stamped with the caller's tenant and trace."""
    return {
        "event_id": str(uuid.uuid4()),
        "session_id": body.session_id or str(uuid.uuid4()),
        "persona_id": body.persona_id or edge.agent.get("persona_id"),
        "role": body.role,
        "type": body.role,
        "message": body.message,
        "attachments": body.attachments,
        "metadata": edge.metadata(body.metadata),
        "version": UPSTREAM_VERSION,
        "tenant": edge.tenant,
        "request_id": edge.request_id,
        "trace_context": edge.trace_context(),
        "occurred_at": utc_now_iso(),
    }


@router.post(
    "/v1/session/message",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Accepted,
    summary="Send a session message",
)
async def post_session_message(
    body: SessionMessage, request: Request, edge: EdgeContext = Depends(edge_context)
) -> dict[str, Any]:
    """Accepted (202) once the broker has stored the event; 503 + Retry-After when it cannot."""
    event = conversation_event(body, edge)
    spec = request.app.state.registry.get(TOPIC)
    (delivery,) = await send_records(request, build_records(spec, [event], edge.record_context()))
    return {
        "session_id": event["session_id"],
        "event_id": event["event_id"],
        **delivery_body(delivery),
    }
