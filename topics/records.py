"""Turn an event into a Kafka record: validate, key by tenant, encode, set the standard headers."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from processors.keys import KeyError_, record_key
from processors.tracing import new_traceparent, parse_traceparent
from schemas import SchemaValidationError, validator
from topics.registry import TopicSpec

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True)
class OutgoingRecord:
    """A record ready for the wire; the partition is left to the murmur2 partitioner."""

    topic: str
    key: str | None  # None only for a dead letter of a record that had no key
    value: bytes
    headers: Headers

    def key_bytes(self) -> bytes | None:
        return None if self.key is None else self.key.encode()


@dataclass(frozen=True)
class RecordContext:
    """Who sent an event and in which trace; becomes the record headers."""

    tenant: str
    request_id: str | None = None
    traceparent: str | None = None


def build_record(spec: TopicSpec, event: Mapping[str, Any], ctx: RecordContext) -> OutgoingRecord:
    """Validate `event` against the topic's schema and build its record.

    Raises SchemaValidationError (names field and rule) when the event breaks the contract,
    including a tenant field that differs from the sender's tenant.
    """
    validator(spec.schema)(event)
    event_tenant = event.get("tenant")
    if event_tenant is not None and event_tenant != ctx.tenant:
        raise SchemaValidationError(
            schema_id=spec.schema,
            field="/tenant",
            rule="tenant",
            message=f"field '/tenant': must equal the sender's tenant {ctx.tenant!r} "
            "(rule: tenant)",
        )
    try:
        key = record_key(spec.key_rule, dict(event), ctx.tenant)
    except KeyError_ as exc:
        raise SchemaValidationError(
            schema_id=spec.schema, field="/", rule="key", message=str(exc)
        ) from None
    trace = parse_traceparent(ctx.traceparent) or new_traceparent()
    headers: Headers = [
        ("tenant", ctx.tenant.encode()),
        ("request_id", (ctx.request_id or str(uuid.uuid4())).encode()),
        ("traceparent", trace.header().encode()),
        ("schema", spec.schema.encode()),
    ]
    idempotency_key = event.get("idempotency_key")
    if isinstance(idempotency_key, str):
        headers.append(("idempotency_key", idempotency_key.encode()))
    return OutgoingRecord(spec.name, key, orjson.dumps(event), headers)
