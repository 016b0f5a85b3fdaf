"""Admin endpoints (role `admin`): the topic registry with each topic's high watermarks."""

from __future__ import annotations

import asyncio
from typing import Any

from confluent_kafka import KafkaException
from fastapi import APIRouter, Depends, Request

from gateway.auth import Principal, require_admin
from gateway.openapi import responses
from topics.admin import high_watermarks
from topics.audit import emit_audit
from topics.errors import BrokerUnavailable
from topics.registry import TopicRegistry

router = APIRouter(prefix="/v1/admin", tags=["admin"])


@router.get(
    "/topics",
    summary="Registry topics and their high watermarks",
    responses=responses(401, 403, 503),
)
async def list_topics(
    request: Request, principal: Principal = Depends(require_admin)
) -> dict[str, Any]:
    """Every registry topic; `high_watermarks` is null for a topic missing on the broker.

    Audited (`topics.list`): the answer is sent only once the audit event is acknowledged.
    """
    registry: TopicRegistry = request.app.state.registry
    settings = request.app.state.settings
    specs = list(registry)
    try:
        # A metadata request and one watermark query per partition: blocking, so off the loop.
        marks = await asyncio.to_thread(
            high_watermarks, settings, [s.name for s in specs], settings.health_timeout_s * 5
        )
    except KafkaException as exc:
        raise BrokerUnavailable(f"cannot read topic watermarks: {exc}") from None
    topics = []
    for spec in specs:
        partitions = marks.get(spec.name)
        topics.append(
            {
                "topic": spec.name,
                "partitions": spec.partitions,
                "schema": spec.schema,
                "key_rule": spec.key_rule.value,
                "public": spec.public,
                "dlq": spec.dlq,
                "high_watermarks": {str(p): o for p, o in partitions.items()}
                if partitions
                else None,
            }
        )
    await emit_audit(
        request.app.state.producer,
        principal.subject,
        principal.tenant,
        "topics.list",
        "topics",
        "ok",
        request.state.request_id,
        request.state.traceparent,
        details={"topics": len(topics)},
    )
    return {"topics": topics}
