"""POST /v1/session/message: the upstream SomaAgent01 endpoint, producing conversation.inbound."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Depends, Request, status
from pydantic import BaseModel

from gateway.backpressure import throttled_edge
from gateway.body import json_body
from gateway.context import EdgeContext, utc_now_iso
from gateway.openapi import json_request_body, responses
from gateway.produce import build_records, delivery_body, send_records

router = APIRouter(tags=["session"])

TOPIC = "conversation.inbound"
UPSTREAM_VERSION = "sa01-v1"


BODY = "SessionMessage"  # gateway/request_schemas.py: derived from conversation_event


class Accepted(BaseModel):
    session_id: str
    event_id: str
    topic: str
    partition: int
    offset: int


def conversation_event(body: dict[str, Any], edge: EdgeContext) -> dict[str, Any]:
    """The conversation_event for a validated message body, stamped with tenant and trace.

    Absent and null mean "not given"; an empty string was already refused by the body schema,
    so it never silently becomes a new session.
    """
    role = body.get("role", "user")
    return {
        "event_id": str(uuid.uuid4()),
        "session_id": body.get("session_id") or str(uuid.uuid4()),
        "persona_id": body.get("persona_id") or edge.agent.get("persona_id"),
        "role": role,
        "type": role,
        "message": body["message"],
        "attachments": body.get("attachments", []),
        "metadata": edge.metadata(body.get("metadata")),
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
    responses=responses(400, 401, 413, 415, 422, 429, 503),
    openapi_extra=json_request_body(BODY),
)
async def post_session_message(
    request: Request,
    edge: EdgeContext = Depends(throttled_edge),
    body: dict[str, Any] = Depends(json_body(BODY)),
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
