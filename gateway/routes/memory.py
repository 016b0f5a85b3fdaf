"""POST /v1/memory/remember and /v1/memory/batch: explicit memory writes to memory.requests."""

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
from processors.idempotency import derive_idempotency_key
from soma.settings import Settings

router = APIRouter(tags=["memory"])

TOPIC = "memory.requests"


# gateway/request_schemas.py: both derived from memory_write.
WRITE_BODY = "MemoryWrite"
BATCH_BODY = "MemoryBatch"


class WriteAccepted(BaseModel):
    event_id: str
    idempotency_key: str
    topic: str
    partition: int
    offset: int


class BatchAccepted(BaseModel):
    results: list[WriteAccepted]


def memory_write_event(
    body: dict[str, Any], edge: EdgeContext, settings: Settings
) -> dict[str, Any]:
    """The memory_write event for a validated write body (absent and null mean "not given"),
    with a deterministic idempotency key when none came."""
    namespace = body.get("namespace") or settings.namespace
    session_id = body.get("session_id")
    # Everything that makes two writes the same memory goes into the derived key; the event id,
    # request id and timestamps do not, so a client retry dedupes.
    identity = {
        "namespace": namespace,
        "memory_type": body.get("memory_type"),
        "payload": body["payload"],
        "content": body.get("content"),
        "universe": body.get("universe"),
    }
    key = body.get("idempotency_key") or derive_idempotency_key(edge.tenant, session_id, identity)
    event: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "tenant": edge.tenant,
        # A sessionless write is keyed by its idempotency key, so retries land on one partition
        # and sessionless writes spread over partitions instead of sharing one "default" session.
        "session_id": session_id or key,
        "idempotency_key": key,
        "namespace": namespace,
        "memory_type": body.get("memory_type") or "episodic",
        "payload": body["payload"],
        "universe": body.get("universe") or edge.agent.get("universe_id"),
        "persona_id": body.get("persona_id") or edge.agent.get("persona_id"),
        "agent_profile": body.get("agent_profile") or edge.agent.get("agent_profile"),
        "metadata": edge.metadata(body.get("metadata")),
        "request_id": edge.request_id,
        "trace_context": edge.trace_context(),
        "occurred_at": utc_now_iso(),
    }
    if body.get("content") is not None:
        event["content"] = body["content"]
    return event


async def _produce(
    request: Request, writes: list[dict[str, Any]], edge: EdgeContext, pointer: str | None
) -> list[dict[str, Any]]:
    events = [memory_write_event(w, edge, request.app.state.settings) for w in writes]
    spec = request.app.state.registry.get(TOPIC)
    records = build_records(spec, events, edge.record_context(), pointer=pointer)
    deliveries = await send_records(request, records)
    return [
        {"event_id": e["event_id"], "idempotency_key": e["idempotency_key"], **delivery_body(d)}
        for e, d in zip(events, deliveries, strict=True)
    ]


@router.post(
    "/v1/memory/remember",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=WriteAccepted,
    summary="Remember one memory",
    responses=responses(400, 401, 413, 415, 422, 429, 503),
    openapi_extra=json_request_body(WRITE_BODY),
)
async def remember(
    request: Request,
    edge: EdgeContext = Depends(throttled_edge),
    body: dict[str, Any] = Depends(json_body(WRITE_BODY)),
) -> dict[str, Any]:
    """Accepted (202) once the broker stored the write; the flows deliver it to memory."""
    (result,) = await _produce(request, [body], edge, pointer=None)
    return result


@router.post(
    "/v1/memory/batch",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=BatchAccepted,
    summary="Remember many memories",
    responses=responses(400, 401, 413, 415, 422, 429, 503),
    openapi_extra=json_request_body(BATCH_BODY),
)
async def remember_batch(
    request: Request,
    edge: EdgeContext = Depends(throttled_edge),
    body: dict[str, Any] = Depends(json_body(BATCH_BODY, batch_key="items")),
) -> dict[str, Any]:
    """All items are validated before any is sent; one invalid item refuses the whole batch.
    More than SOMA_MAX_BATCH_ITEMS items is 413 before any item is looked at."""
    return {"results": await _produce(request, body["items"], edge, pointer="/items")}
