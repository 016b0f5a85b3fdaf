"""POST /v1/memory/remember and /v1/memory/batch: explicit memory writes to memory.requests."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Depends, Request, status
from pydantic import BaseModel, ConfigDict, Field

from gateway.context import EdgeContext, edge_context, utc_now_iso
from gateway.limits import batch_limit
from gateway.produce import build_records, delivery_body, send_records
from processors.idempotency import derive_idempotency_key
from soma.settings import Settings

router = APIRouter(tags=["memory"])

TOPIC = "memory.requests"


class MemoryWrite(BaseModel):
    """One memory write; content rules (lengths, memory types) live in the memory_write schema."""

    model_config = ConfigDict(extra="forbid")

    session_id: str | None = Field(
        None, description="Session of the write; sessionless writes are keyed by idempotency key."
    )
    idempotency_key: str | None = Field(
        None, description="What the memory service dedupes on; derived from the write if absent."
    )
    namespace: str | None = Field(None, description="Memory namespace; SOMA_NAMESPACE if absent.")
    memory_type: str | None = Field(None, description="episodic | semantic | procedural")
    payload: dict[str, Any]
    content: str | None = None
    universe: str | None = Field(None, description="Memory universe; X-Universe-Id if absent.")
    persona_id: str | None = Field(None, description="Persona; X-Persona-Id if absent.")
    agent_profile: str | None = Field(None, description="Agent profile; X-Agent-Profile if absent.")
    metadata: dict[str, Any] = Field(default_factory=dict)


class MemoryBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[MemoryWrite]


class WriteAccepted(BaseModel):
    event_id: str
    idempotency_key: str
    topic: str
    partition: int
    offset: int


class BatchAccepted(BaseModel):
    results: list[WriteAccepted]


def memory_write_event(body: MemoryWrite, edge: EdgeContext, settings: Settings) -> dict[str, Any]:
    """The memory_write event for a write, with a deterministic idempotency key when none came."""
    namespace = body.namespace or settings.namespace
    # Everything that makes two writes the same memory goes into the derived key; the event id,
    # request id and timestamps do not, so a client retry dedupes.
    identity = {
        "namespace": namespace,
        "memory_type": body.memory_type,
        "payload": body.payload,
        "content": body.content,
        "universe": body.universe,
    }
    key = body.idempotency_key or derive_idempotency_key(edge.tenant, body.session_id, identity)
    event: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "tenant": edge.tenant,
        # A sessionless write is keyed by its idempotency key, so retries land on one partition
        # and sessionless writes spread over partitions instead of sharing one "default" session.
        "session_id": body.session_id or key,
        "idempotency_key": key,
        "namespace": namespace,
        "memory_type": body.memory_type or "episodic",
        "payload": body.payload,
        "universe": body.universe or edge.agent.get("universe_id"),
        "persona_id": body.persona_id or edge.agent.get("persona_id"),
        "agent_profile": body.agent_profile or edge.agent.get("agent_profile"),
        "metadata": edge.metadata(body.metadata),
        "request_id": edge.request_id,
        "trace_context": edge.trace_context(),
        "occurred_at": utc_now_iso(),
    }
    if body.content is not None:
        event["content"] = body.content
    return event


async def _produce(
    request: Request, writes: list[MemoryWrite], edge: EdgeContext, pointer: str | None
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
)
async def remember(
    body: MemoryWrite, request: Request, edge: EdgeContext = Depends(edge_context)
) -> dict[str, Any]:
    """Accepted (202) once the broker stored the write; the flows deliver it to memory."""
    (result,) = await _produce(request, [body], edge, pointer=None)
    return result


@router.post(
    "/v1/memory/batch",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=BatchAccepted,
    summary="Remember many memories",
)
async def remember_batch(
    body: MemoryBatch,
    request: Request,
    edge: EdgeContext = Depends(edge_context),
    _: None = Depends(batch_limit("items")),
) -> dict[str, Any]:
    """All items are validated before any is sent; one invalid item refuses the whole batch."""
    return {"results": await _produce(request, body.items, edge, pointer="/items")}
