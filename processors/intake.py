"""Admit a consumed record into a flow: size, key, JSON, schema, tenant and partition checks."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from processors.dead_letters import DeadLetterReason, SourceRecord
from processors.errors import PoisonRecord
from processors.keys import SEPARATOR, is_tenant
from processors.partitioning import partition_for
from schemas import SchemaValidationError

SchemaCheck = Callable[[Mapping[str, Any]], None]  # raises SchemaValidationError


@dataclass(frozen=True)
class Event:
    """A record that passed intake: its key, tenant and decoded JSON value."""

    record: SourceRecord
    key: str
    tenant: str
    value: dict[str, Any]

    @property
    def offset(self) -> int:
        return self.record.offset

    @property
    def partition(self) -> int:
        return self.record.partition

    @property
    def topic(self) -> str:
        return self.record.topic


def admit(
    record: SourceRecord, *, check_schema: SchemaCheck, partitions: int, max_bytes: int
) -> Event:
    """The decoded event, or PoisonRecord saying which rule the record breaks.

    The partition rule matters because per-key state and per-key ordering both assume a key
    only ever arrives on the partition murmur2 gives it: a record elsewhere comes from a
    producer with another partitioner, and folding it would split its key's state in two.
    """

    def poison(reason: DeadLetterReason, message: str) -> PoisonRecord:
        return PoisonRecord(
            reason, message, topic=record.topic, partition=record.partition, offset=record.offset
        )

    size = len(record.value or b"") + len(record.key or b"")
    if size > max_bytes:
        raise poison(DeadLetterReason.OVERSIZED, f"record of {size} bytes > limit {max_bytes}")
    if not record.key:
        raise poison(DeadLetterReason.NO_KEY, "record has no key (every key starts with a tenant)")
    try:
        key = record.key.decode("utf-8")
    except UnicodeDecodeError:
        raise poison(DeadLetterReason.NO_KEY, "record key is not UTF-8") from None
    tenant = key.split(SEPARATOR, 1)[0]
    if not is_tenant(tenant):
        raise poison(DeadLetterReason.NO_KEY, f"record key {key[:80]!r} names no valid tenant")
    expected = partition_for(record.key, partitions)
    if expected != record.partition:
        raise poison(
            DeadLetterReason.WRONG_PARTITION,
            f"key belongs on partition {expected} by murmur2: its producer does not use the "
            "Java-compatible murmur2 partitioner (librdkafka: partitioner=murmur2_random)",
        )
    try:
        value = orjson.loads(record.value) if record.value is not None else None
    except orjson.JSONDecodeError as exc:
        raise poison(DeadLetterReason.NOT_JSON, f"value is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise poison(DeadLetterReason.NOT_JSON, f"value is {type(value).__name__}, not an object")
    try:
        check_schema(value)
    except SchemaValidationError as exc:
        raise poison(DeadLetterReason.SCHEMA, str(exc)) from None
    named = value.get("tenant")
    if named is not None and named != tenant:
        raise poison(DeadLetterReason.SCHEMA, f"field '/tenant' {named!r} differs from key tenant")
    return Event(record=record, key=key, tenant=tenant, value=value)
