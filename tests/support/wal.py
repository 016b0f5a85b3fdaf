"""memory.wal records as the write path makes them: the primary's rows and their WAL records."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from confluent_kafka import Producer

from processors.audit import rfc3339
from processors.memory_keys import DEFAULT_UNIVERSE, MemoryScope
from processors.replication import replica_write
from soma.settings import Settings
from state.memory.postgres import PostgresMemoryBackend
from topics.producer import producer_config
from topics.records import RecordContext, build_record
from topics.registry import TopicRegistry

NAMESPACE = "wm"


def wal_event(
    tenant: str, n: int, *, session: str = "s1", namespace: str = NAMESPACE
) -> dict[str, Any]:
    """A valid memory_wal record: the n-th acknowledged write of `tenant`."""
    now = rfc3339(datetime.now(UTC))
    return {
        "tenant": tenant,
        "idempotency_key": f"{tenant}/{namespace}/{session}/user/{n:08d}",
        "event_id": str(uuid.uuid4()),
        "session_id": session,
        "source_topic": "memory.requests",
        "source_partition": 0,
        "source_offset": n,
        "memory_id": None,
        "namespace": namespace,
        "memory_type": "episodic",
        "payload": {"fact": f"fact number {n} of {tenant}", "n": n, "nested": {"list": [n, n + 1]}},
        "acknowledged_at": now,
        "event_time": now,
        "backend": "postgres",
    }


def scopes(tenants: Iterable[str], namespace: str = NAMESPACE) -> list[MemoryScope]:
    return [MemoryScope(t, namespace, DEFAULT_UNIVERSE) for t in tenants]


class WalProducer:
    """Sends WAL records through the project's record builder (validated, murmur2-keyed)."""

    def __init__(self, settings: Settings) -> None:
        self.spec = TopicRegistry(settings.topic_prefix).get("memory.wal")
        self._producer = Producer(producer_config(settings, **{"linger.ms": 5}))

    def send(self, events: Iterable[dict[str, Any]]) -> int:
        sent = 0
        for event in events:
            record = build_record(self.spec, event, RecordContext(tenant=event["tenant"]))
            headers: list[tuple[str, str | bytes | None]] = list(record.headers)
            while True:
                try:
                    self._producer.produce(
                        record.topic, record.value, record.key_bytes(), headers=headers
                    )
                    break
                except BufferError:
                    self._producer.poll(0.05)
            self._producer.poll(0)
            sent += 1
        return sent

    def send_unvalidated(self, event: dict[str, Any]) -> None:
        """`event` as it is, with the key and headers a valid one would get: a record the schema
        refuses, as one written before a rule or by a producer that skips validation."""
        shape = build_record(
            self.spec, {**event, "namespace": NAMESPACE}, RecordContext(tenant=event["tenant"])
        )
        self._producer.produce(
            shape.topic, orjson.dumps(event), shape.key_bytes(), headers=list(shape.headers)
        )

    def flush(self) -> None:
        left = self._producer.flush(30)
        if left:
            raise RuntimeError(f"{left} WAL records not acknowledged")


def write_primary(settings: Settings, events: Sequence[dict[str, Any]]) -> None:
    """Store `events` in the primary backend, as the write path does before it writes the WAL."""

    async def run() -> None:
        async with PostgresMemoryBackend(settings.postgres_dsn) as backend:
            writes = [replica_write(e, default_namespace=settings.namespace) for e in events]
            for start in range(0, len(writes), 500):
                await backend.remember_batch(writes[start : start + 500])

    asyncio.run(run())
