"""The gateway's produce path: validate every event first, then send and await the broker's ack."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import Request

from gateway.errors import PayloadTooLarge, prefixed
from schemas import SchemaValidationError
from soma.metrics import GATEWAY_PRODUCE_FAILURES, GATEWAY_PRODUCED_RECORDS
from soma.settings import Settings
from topics.errors import BrokerUnavailable, ProducerQueueFull, RecordRejected
from topics.producer import Delivery, EventProducer
from topics.records import OutgoingRecord, RecordContext, build_record
from topics.registry import TopicSpec

# librdkafka's default message.max.bytes (the broker's default is slightly above it): a bigger
# record would be refused after the body was accepted, so refuse it up front with 413.
MAX_RECORD_BYTES = 1_000_000
# Beyond message.timeout.ms the delivery report is overdue; this guard only bounds the wait.
_ACK_GRACE_S = 2.0


def build_records(
    spec: TopicSpec,
    events: Sequence[Mapping[str, Any]],
    ctx: RecordContext,
    pointer: str | None = None,
) -> list[OutgoingRecord]:
    """Validate and encode every event before any is sent (all or nothing at the contract).

    With `pointer` (e.g. `/items`), errors name the item: `/items/3/payload`.
    """
    records = []
    for index, event in enumerate(events):
        where = f"{pointer}/{index}" if pointer is not None else ""
        try:
            record = build_record(spec, event, ctx)
        except SchemaValidationError as exc:
            raise prefixed(exc, where) if where else exc from None
        size = (
            len(record.value)
            + len(record.key or "")
            + sum(len(k) + len(v) for k, v in record.headers)
        )
        if size > MAX_RECORD_BYTES:
            raise PayloadTooLarge(
                f"event {where or '/'} encodes to {size} bytes; a record holds at most "
                f"{MAX_RECORD_BYTES}",
                field=where or "/",
                limit_bytes=MAX_RECORD_BYTES,
            )
        records.append(record)
    return records


async def send_records(request: Request, records: Sequence[OutgoingRecord]) -> list[Delivery]:
    """Send records and return only after the broker acknowledged every one of them."""
    producer: EventProducer = request.app.state.producer
    settings: Settings = request.app.state.settings
    topic = records[0].topic if records else ""
    try:
        deliveries = await asyncio.wait_for(
            producer.send_records(records), timeout=settings.produce_timeout_s + _ACK_GRACE_S
        )
    except TimeoutError:
        GATEWAY_PRODUCE_FAILURES.labels(topic=topic, reason="ack_timeout").inc()
        raise BrokerUnavailable("no broker acknowledgement in time; retry later") from None
    except ProducerQueueFull:
        GATEWAY_PRODUCE_FAILURES.labels(topic=topic, reason="queue_full").inc()
        raise
    except BrokerUnavailable:
        GATEWAY_PRODUCE_FAILURES.labels(topic=topic, reason="broker_unavailable").inc()
        raise
    except RecordRejected:
        GATEWAY_PRODUCE_FAILURES.labels(topic=topic, reason="rejected").inc()
        raise
    for delivery in deliveries:
        GATEWAY_PRODUCED_RECORDS.labels(topic=delivery.topic).inc()
    return deliveries


def delivery_body(delivery: Delivery) -> dict[str, Any]:
    """Where the broker stored a record, as a response body fragment."""
    return {"topic": delivery.topic, "partition": delivery.partition, "offset": delivery.offset}
