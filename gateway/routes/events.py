"""POST /v1/events/{topic}: clients produce schema-valid events to the registry's public topics."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Depends, Path, Request, status

from gateway.auth import Principal, require_principal
from gateway.body import read_json
from gateway.context import EdgeContext, edge_context, utc_now_iso
from gateway.errors import TopicNotPublic
from gateway.openapi import json_request_body, responses
from gateway.produce import build_records, delivery_body, send_records
from gateway.request_schemas import event_component
from schemas import SchemaValidationError, load_schema
from topics.registry import TopicRegistry, TopicSpec, UnknownTopic

router = APIRouter(tags=["events"])

# Kafka's own rule for a topic name: only a name that could be one is echoed back.
PUBLIC_TOPICS = TopicRegistry().public()


@functools.cache
def _declared_fields(schema_id: str) -> frozenset[str]:
    return frozenset(load_schema(schema_id).get("properties", {}))


@functools.cache
def _required_fields(schema_id: str) -> frozenset[str]:
    return frozenset(load_schema(schema_id).get("required", []))


def _public_spec(registry: TopicRegistry, topic: str) -> TopicSpec:
    spec = registry.get(topic)  # UnknownTopic: 404 (gateway/errors.py)
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
    # Agent headers fill metadata the body sent, or create it where the schema does not
    # require it: a body the published schema refuses (required metadata missing) stays refused.
    metadata = stamped.get("metadata")
    creatable = metadata is None and "metadata" not in _required_fields(spec.schema)
    if "metadata" in declared and edge.agent and (isinstance(metadata, dict) or creatable):
        stamped["metadata"] = edge.metadata(metadata)
    return stamped


def _events(body: dict[str, Any]) -> tuple[list[Any], str | None]:
    # {"events": [...]} is a batch; any other object is one event (no event schema has a
    # field called "events", so the two cannot be confused).
    if set(body) == {"events"} and isinstance(body["events"], list):
        return body["events"], "/events"
    return [body], None


async def _produce_events(
    request: Request, spec: TopicSpec, edge: EdgeContext, body: Any
) -> dict[str, Any]:
    """One event (an object) or a batch (`{"events": [...]}`), validated against the topic's
    schema; accepted (202) after the broker stored every record."""
    if not isinstance(body, dict):
        raise SchemaValidationError(
            schema_id=spec.schema, field="/", rule="type", message="field '/': must be an object"
        )
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


def _topic_endpoint(topic: str) -> Callable[..., Awaitable[dict[str, Any]]]:
    async def post_topic_events(
        request: Request, edge: EdgeContext = Depends(edge_context)
    ) -> dict[str, Any]:
        spec = request.app.state.registry.get(topic)
        # The stamped events are validated against the topic's schema (build_records), so no
        # second, body-level validation runs: the published body schema is that schema minus
        # what the gateway stamps.
        body = await read_json(request, batch_key="events")
        return await _produce_events(request, spec, edge, body)

    return post_topic_events


# One operation per public topic, so the OpenAPI document can give each its own body schema.
for _topic in PUBLIC_TOPICS:
    router.add_api_route(
        f"/v1/events/{_topic}",
        _topic_endpoint(_topic),
        methods=["POST"],
        status_code=status.HTTP_202_ACCEPTED,
        name=f"post_events_{_topic}",
        operation_id=f"post_events_{_topic.replace('.', '_')}",
        summary=f"Produce events to {_topic}",
        description='One event, or a batch `{"events": [...]}` (all or nothing), validated '
        f"against the schema of `{_topic}`; accepted (202) once the broker stored every record. "
        "The gateway stamps tenant (from the token), event_id, occurred_at, request_id and "
        "trace_context where the body leaves them out.",
        responses=responses(400, 401, 413, 415, 422, 503),
        openapi_extra=json_request_body(event_component(_topic)),
    )


@router.post(
    "/v1/events/{topic}",
    status_code=status.HTTP_404_NOT_FOUND,
    summary="Any other topic: unknown (404) or internal (403)",
    # No success here: the route's own status is the 404 it answers for an unknown topic. A
    # public topic's name (which this operation's schema excludes) is served by that topic's
    # own operation, so the path can also answer what those answer.
    responses={
        **responses(400, 401, 403, 404, 413, 415, 422, 503),
        202: {"description": "Only for a public topic's name: see that topic's operation."},
    },
    response_description="No such topic (`unknown_topic`).",
)
async def post_other_topic(
    request: Request,
    topic: str = Path(
        json_schema_extra={"not": {"enum": PUBLIC_TOPICS}},
        description="Any name but a public topic's (those have their own operation).",
    ),
    _: Principal = Depends(require_principal),
) -> None:
    """Clients may produce only to the public topics; the answer says which they are."""
    _public_spec(request.app.state.registry, topic)
    raise UnknownTopic(topic)  # not reached: public topics have their own route
