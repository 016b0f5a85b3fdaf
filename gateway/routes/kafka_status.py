"""GET /v1/admin/kafka/status: one consumer group's position on one topic, partition by partition.

The numbers are the lag exporter's (`state/lag.py` reads, `processors/lag.py` arithmetic),
read on demand with fresh clients.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated

from confluent_kafka import KafkaException
from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from gateway.auth import Principal, require_admin
from gateway.openapi import responses
from state.lag import GroupTopics, LagReport, read_lag_once
from topics.errors import BrokerUnavailable
from topics.registry import TopicRegistry, UnknownTopic

router = APIRouter(prefix="/v1/admin", tags=["admin"])

# Kafka's own rules: topic names, and the characters the plane's group ids use.
_TOPIC = r"^[A-Za-z0-9._-]+$"
_GROUP = r"^[A-Za-z0-9._:-]+$"


class PartitionStatus(BaseModel):
    partition: int
    committed: int | None = Field(
        description="The group's committed offset (next record it reads); null: never committed."
    )
    low: int = Field(description="First offset still in the log.")
    end: int = Field(description="End offset (high watermark).")
    lag: int = Field(
        description="end - committed, as kafka-consumer-groups prints it; counted from `low` "
        "when the group never committed (the plane's consumers start at the earliest offset)."
    )
    lag_seconds: float | None = Field(
        description="How long the oldest uncommitted record has waited (0 when caught up); "
        "null when no record timestamp could be read in time."
    )


class KafkaStatus(BaseModel):
    topic: str = Field(description="The topic's name on the broker (prefix applied).")
    group: str
    taken_at: str = Field(description="When the broker was read (UTC, ISO 8601).")
    total_lag: int
    partitions: list[PartitionStatus]


@router.get(
    "/kafka/status",
    response_model=KafkaStatus,
    summary="A consumer group's committed and end offsets and lag on a topic",
    responses=responses(401, 403, 404, 422, 503),
)
async def kafka_status(
    request: Request,
    topic: Annotated[
        str,
        Query(
            min_length=1,
            max_length=249,
            pattern=_TOPIC,
            description="Registry topic, e.g. `conversation.inbound`.",
        ),
    ],
    group: Annotated[
        str, Query(min_length=1, max_length=255, pattern=_GROUP, description="Consumer group id.")
    ],
    _admin: Principal = Depends(require_admin),
) -> KafkaStatus:
    """Per partition: committed offset, end offset, lag in records and in seconds.

    404 when the topic is not in the registry or not on the broker; 503 with `Retry-After`
    when the broker does not answer.
    """
    settings = request.app.state.settings
    registry: TopicRegistry = request.app.state.registry
    name = registry.get(topic).name  # UnknownTopic: 404
    try:
        report: LagReport = await asyncio.to_thread(
            read_lag_once,
            settings,
            [GroupTopics(group, (name,), tenant_keys=False)],  # no tenant split: one sample
            timeout_s=settings.health_timeout_s * 5,
        )
    except (KafkaException, TimeoutError) as exc:  # the reader's own are BrokerUnavailable
        raise BrokerUnavailable(f"cannot read the lag of group {group!r}: {exc}") from None
    if name not in report.topics:
        raise UnknownTopic(topic)  # registered, but not created on the broker
    rows = [
        PartitionStatus(
            partition=p.offsets.partition,
            committed=p.offsets.committed,
            low=p.offsets.low,
            end=p.offsets.end,
            lag=p.offsets.lag,
            lag_seconds=None if p.seconds is None else round(p.seconds, 3),
        )
        for p in sorted(report.partitions, key=lambda p: p.offsets.partition)
    ]
    taken_at = datetime.fromtimestamp(report.taken_at_ms / 1000, UTC)
    return KafkaStatus(
        topic=name,
        group=group,
        taken_at=taken_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        total_lag=sum(r.lag for r in rows),
        partitions=rows,
    )
