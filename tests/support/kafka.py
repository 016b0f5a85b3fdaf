"""Read records back from the real broker in tests (fresh group, bounded by a deadline)."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, Message

from soma.settings import Settings


def read_records(
    settings: Settings, topic: str, expected: int, timeout_s: float = 30.0
) -> list[Message]:
    """Read `topic` from the beginning until `expected` records arrived or the deadline passed."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"test-reader-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    records: list[Message] = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + timeout_s
        while len(records) < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            records.append(msg)
        return records
    finally:
        consumer.close()
