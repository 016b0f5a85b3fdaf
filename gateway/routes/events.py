"""POST /v1/events/{topic}: clients produce schema-valid events to the registry's public topics."""

from __future__ import annotations

import functools
import uuid
from typing import Any

from fastapi import APIRouter, Body, Depends, Request, status

from gateway.context import EdgeContext, edge_context, utc_now_iso
from gateway.errors import TopicNotPublic, UnknownTopic
from gateway.limits import batch_limit
from gateway.produce import build_records, delivery_body, send_records
from schemas import SchemaValidationError, load_schema
from topics import registry as topic_registry
from topics.registry import TopicRegistry, TopicSpec

router = APIRouter(tags=["events"])

_EXAMPLE = {"events": [{"session_id": "s-1", "tool_name": "search", "args": {}, "metadata": {}}]}


@functools.cache
def _declared_fields(schema_id: str) -> frozenset[str]:
    return frozenset(load_schema(schema_id).get("properties", {}))


def _public_spec(registry: TopicRegistry, topic: str) -> TopicSpec:
    try:
        spec = registry.get(topic)
    except topic_registry.UnknownTopic:
        raise UnknownTopic(
            f"no topic {topic!r} in the registry", topic=topic, public_topics=registry.public()
        ) from None
    if not spec.public:
        # 403 rather than a 404 that pretends the topic does not exist: the registry is published
        # in the docs anyway, and saying "internal topic" tells a client what to use instead.
        # Internal topics (outbox, WAL, audit, DLQs) are written only by the flows, whose
        # invariants (one WAL record per acknowledged write, ...) a client could break.
        raise TopicNotPublic(
            f"topic {topic!r} is internal; clients may produce only to the public topics",
            topic=topic,
            public_topics=registry.public(),
        )
    return spec


def _stamp(event: dict[str, Any], spec: TopicSpec, edge: EdgeContext, where: str) -> dict[str, Any]:
    """The event with tenant, ids, time, trace and agent headers filled in where absent."""
    if event.get("tenant", edge.tenant) != edge.tenant:
        raise SchemaValidationError(
            schema_id=spec.schema,
            field=f"{where}/tenant",
            rule="tenant",
            message=f"field '{where}/tenant': the tenant comes from the token "
            f"({edge.tenant!r}); omit it or send the same value (rule: tenant)",
        )
    stamped = {**event, "tenant": edge.tenant}
    # Only fields the topic's schema declares are filled in, so stamping never makes a valid
    # event invalid under additionalProperties: false.
    declared = _declared_fields(spec.schema)
    # An event id is what consumers dedupe on: a client that retries should send its own,
    # one that does not gets a fresh one back in the response.
    if "event_id" in declared:
        stamped.setdefault("event_id", str(uuid.uuid4()))
    if "occurred_at" in declared:
        stamped.setdefault("occurred_at", utc_now_iso())
    if "request_id" in declared:
        stamped.setdefault("request_id", edge.request_id)
    if "trace_context" in declared:
        stamped.setdefault("trace_context", edge.trace_context())
    if (
        "persona_id" in declared
        and stamped.get("persona_id") is None
        and "persona_id" in edge.agent
    ):
        stamped["persona_id"] = edge.agent["persona_id"]
    if "metadata" in declared and edge.agent and isinstance(stamped.get("metadata", {}), dict):
        stamped["metadata"] = edge.metadata(stamped.get("metadata"))
    return stamped


def _events(body: dict[str, Any]) -> tuple[list[Any], str | None]:
    # {"events": [...]} is a batch; any other object is one event (no event schema has a
    # field called "events", so the two cannot be confused).
    if set(body) == {"events"} and isinstance(body["events"], list):
        return body["events"], "/events"
    return [body], None


@router.post(
    "/v1/events/{topic}",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Produce events to a public topic",
)
async def post_events(
    topic: str,
    request: Request,
    body: dict[str, Any] = Body(openapi_examples={"batch": {"value": _EXAMPLE}}),
    edge: EdgeContext = Depends(edge_context),
    _: None = Depends(batch_limit("events")),
) -> dict[str, Any]:
    """One event (an object) or a batch (`{"events": [...]}`), validated against the topic's
    schema; accepted (202) after the broker stored every record."""
    spec = _public_spec(request.app.state.registry, topic)
    raw, pointer = _events(body)
    events = []
    for index, event in enumerate(raw):
        where = f"{pointer}/{index}" if pointer else ""
        if not isinstance(event, dict):
            raise SchemaValidationError(
                schema_id=spec.schema,
                field=where or "/",
                rule="type",
                message=f"field '{where}': an event must be an object",
            )
        events.append(_stamp(event, spec, edge, where))
    records = build_records(spec, events, edge.record_context(), pointer=pointer)
    deliveries = await send_records(request, records)
    results = [
        {"event_id": e.get("event_id"), **delivery_body(d)}
        for e, d in zip(events, deliveries, strict=True)
    ]
    if pointer is None:
        return results[0]
    return {"results": results}
