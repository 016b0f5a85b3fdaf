"""Operating on dead letters: list and inspect the index, replay, acknowledge and purge.

Used by the gateway's admin API and by `soma dlq`. Reads go through the dead-letter index
(the `dlq-index` flow's state), never through a topic scan; the full envelope of one entry is
read back from its DLQ topic by position. Actions are `dlq_action` records the index applies,
and each one is also an `agent.audit.v1` event.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import orjson
from confluent_kafka import Consumer, TopicPartition

from processors.dead_letters import UNKEYED, original_record
from processors.dlq_index import OPEN, entry_partition_key
from processors.scan import ScanQuery, decode_cursor
from schemas import SchemaValidationError, validator
from soma.settings import Settings
from state.errors import StateError
from state.reads import StateReader
from topics.audit import emit_audit
from topics.consumers import consumer_queue_bounds
from topics.producer import EventProducer
from topics.records import OutgoingRecord, RecordContext, build_record
from topics.registry import TopicRegistry

PAGE = "dlq-index"
MAX_PAGE = 200
REPLAY_HEADERS = ("dlq_replay_of", "dlq_replayed_by", "dlq_replayed_at")
AUDIT_ACTIONS = {
    "acked": "dlq.ack",
    "replayed": "dlq.replay",
    "purged": "dlq.purge",
    "reopened": "dlq.reopen",
}


class EntryNotFound(StateError, LookupError):
    """No dead letter with that id is visible to the caller."""


class ReplayRefused(StateError):
    """Replaying would put a record on its topic that its consumers would refuse again."""

    def __init__(self, message: str, *, field: str = "/", rule: str = "replay") -> None:
        super().__init__(message)
        self.field, self.rule = field, rule


@dataclass(frozen=True)
class Scope:
    """Whose dead letters a caller may see: one tenant's, or (platform admins) everyone's."""

    tenant: str | None  # None: every tenant, dead letters that name none included
    actor: str
    request_id: str | None = None

    def sees(self, entry: Mapping[str, Any]) -> bool:
        return self.tenant is None or entry.get("tenant") == self.tenant


@dataclass(frozen=True)
class ActionResult:
    entry_id: str
    action: str
    status_before: str
    detail: str = ""


class DeadLetters:
    """The dead-letter operations, over one state reader and one producer."""

    def __init__(self, settings: Settings, reader: StateReader, producer: EventProducer) -> None:
        self.settings, self.reader, self.producer = settings, reader, producer
        self.registry = TopicRegistry(settings.topic_prefix)

    async def list_entries(
        self, scope: Scope, query: ScanQuery
    ) -> tuple[list[dict[str, Any]], str | None]:
        """A page of entries the scope sees, newest first, and the next page's cursor."""
        if scope.tenant is not None:
            query = replace(query, equals={**query.equals, "tenant": scope.tenant})
        rows, cursor = await self.reader.scan(PAGE, query)
        return [_public(row) for row in rows], cursor

    async def entry(self, scope: Scope, entry_id: str) -> dict[str, Any]:
        """One entry; EntryNotFound when it does not exist or the scope may not see it."""
        try:
            row = await self.reader.get(PAGE, entry_id)
        except ValueError as exc:
            raise EntryNotFound(f"not a dead-letter id: {exc}") from None
        if not row or row.get("entry_id") != entry_id or not scope.sees(row):
            raise EntryNotFound(f"no dead letter {entry_id[:200]!r}")
        return row

    async def envelope(self, entry: Mapping[str, Any]) -> dict[str, Any]:
        """The full envelope of an entry, read from its DLQ topic at its position."""
        raw = await asyncio.to_thread(
            _read_at, self.settings, entry["dlq_topic"], entry["dlq_partition"], entry["dlq_offset"]
        )
        envelope: dict[str, Any] = orjson.loads(raw)
        return envelope

    async def replay(self, scope: Scope, entry_id: str, *, force: bool = False) -> ActionResult:
        """Republish the dead letter's record to its source topic, as it was, plus replay
        headers; refused when it was replayed already (unless `force`) or would fail again."""
        entry = await self.entry(scope, entry_id)
        if entry["status"] == "replayed" and not force:
            raise ReplayRefused("already replayed; replay again with force", rule="replayed")
        record = original_record(await self.envelope(entry))
        outgoing = self._replay_record(record, scope)
        await self.producer.send_records([outgoing])
        await self._act(scope, entry, "replayed")
        return ActionResult(entry_id, "replayed", entry["status"], f"to {record.topic}")

    async def ack(self, scope: Scope, entry_id: str, note: str | None = None) -> ActionResult:
        entry = await self.entry(scope, entry_id)
        await self._act(scope, entry, "acked", note)
        return ActionResult(entry_id, "acked", entry["status"])

    async def purge(self, scope: Scope, query: ScanQuery, *, limit: int) -> list[ActionResult]:
        """Mark every open entry the query selects purged (at most `limit` of them)."""
        return await self._each(scope, query, limit, lambda e: self._purge_one(scope, e))

    async def replay_many(
        self, scope: Scope, query: ScanQuery, *, limit: int, per_second: float
    ) -> list[ActionResult]:
        """Replay the open entries the query selects, at most `per_second` a second."""
        pause = 1.0 / per_second

        async def one(entry: dict[str, Any]) -> ActionResult:
            started = time.monotonic()
            try:
                result = await self.replay(scope, entry["entry_id"])
            except ReplayRefused as exc:
                result = ActionResult(entry["entry_id"], "refused", entry["status"], str(exc))
            await asyncio.sleep(max(0.0, pause - (time.monotonic() - started)))
            return result

        return await self._each(scope, query, limit, one)

    async def _each(
        self, scope: Scope, query: ScanQuery, limit: int, act: Any
    ) -> list[ActionResult]:
        results: list[ActionResult] = []
        query = replace(query, equals={**query.equals, "status": OPEN})
        cursor = query.after
        while len(results) < limit:
            page = replace(query, after=cursor, limit=min(MAX_PAGE, limit))
            rows, next_cursor = await self.list_entries(scope, page)
            for row in rows[: limit - len(results)]:
                results.append(await act(row))
            if next_cursor is None:
                break
            cursor = decode_cursor(next_cursor)
        return results

    async def _purge_one(self, scope: Scope, entry: dict[str, Any]) -> ActionResult:
        await self._act(scope, entry, "purged")
        return ActionResult(entry["entry_id"], "purged", entry["status"])

    def _replay_record(self, record: Any, scope: Scope) -> OutgoingRecord:
        logical = record.topic.removeprefix(self.settings.topic_prefix)
        spec = self.registry.get(logical)
        if record.key is None or record.value is None:
            raise ReplayRefused("the record has no key or no value: its flow would refuse it")
        try:
            key = record.key.decode("utf-8")
            value = orjson.loads(record.value)
        except (UnicodeDecodeError, orjson.JSONDecodeError):
            raise ReplayRefused(
                "the record is not UTF-8 keyed JSON: its flow would refuse it"
            ) from None
        try:
            validator(spec.schema)(value)
        except SchemaValidationError as exc:
            raise ReplayRefused(
                f"still invalid for {logical}: {exc}", field=exc.field, rule=exc.rule
            ) from None
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        dropped = set(REPLAY_HEADERS)
        headers = [(n, v if v is not None else b"") for n, v in record.headers if n not in dropped]
        headers += [
            ("dlq_replay_of", f"{record.topic}:{record.partition}:{record.offset}".encode()),
            ("dlq_replayed_by", scope.actor.encode()),
            ("dlq_replayed_at", now.encode()),
        ]
        return OutgoingRecord(spec.name, key, record.value, headers)

    async def _act(
        self, scope: Scope, entry: Mapping[str, Any], action: str, note: str | None = None
    ) -> None:
        tenant = entry.get("tenant") or UNKEYED
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        event = {
            "action_id": str(uuid.uuid4()),
            "tenant": tenant,
            "original_key": entry_partition_key(entry["entry_id"]),
            "entry_id": entry["entry_id"],
            "action": action,
            "actor": scope.actor,
            "at": now,
            "request_id": scope.request_id,
            "note": note,
        }
        ctx = RecordContext(tenant=tenant, request_id=scope.request_id)
        await self.producer.send_records(
            [build_record(self.registry.get("dlq.actions"), event, ctx)]
        )
        await emit_audit(
            self.producer,
            actor=scope.actor,
            tenant=tenant,
            action=AUDIT_ACTIONS[action],
            resource=entry["entry_id"][:1024],
            outcome="ok",
            request_id=scope.request_id,
            reason=note,
        )


def _public(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "key"}


def _read_at(settings: Settings, topic: str, partition: int, offset: int) -> bytes:
    """The value of one record, read by position (no group, no scan)."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": "soma-dlq-reader",
            "enable.auto.commit": False,
            "fetch.max.bytes": 8 * 1024 * 1024,
            "max.partition.fetch.bytes": 8 * 1024 * 1024,
            **consumer_queue_bounds(settings),
        }
    )
    try:
        consumer.assign([TopicPartition(topic, partition, offset)])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            value = message.value()
            if message.offset() == offset and value is not None:
                return bytes(value)
            break
        raise EntryNotFound(f"{topic}[{partition}]@{offset} is no longer on the topic (retention)")
    finally:
        consumer.close()
