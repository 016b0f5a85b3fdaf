"""Dead letters: the envelope that carries a failed record with everything needed to replay it."""

from __future__ import annotations

import base64
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from processors.keys import SEPARATOR, is_tenant

MAX_MESSAGE_CHARS = 65536  # the envelope schema's bounds
MAX_STACK_CHARS = 262144
TENANT_HEADER = "tenant"


class DeadLetterReason(StrEnum):
    """Why a record was dead-lettered; the DLQ index filters on it."""

    NOT_JSON = "not_json"  # the value is not a JSON object
    SCHEMA = "schema"  # JSON, but not valid under the topic's schema
    NO_KEY = "no_key"  # null key: no tenant, no partition rule
    WRONG_PARTITION = "wrong_partition"  # not where murmur2 of its key puts it
    OVERSIZED = "oversized"  # larger than the flow accepts
    REJECTED = "rejected"  # a dependency refused it as invalid (irrecoverable)
    PROCESSING = "processing"  # the flow's logic raised on it
    RETRIES_EXHAUSTED = "retries_exhausted"  # transient failures outlasted the retry policy


@dataclass(frozen=True)
class SourceRecord:
    """A consumed record exactly as it came off the broker."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]
    timestamp_ms: int

    def header(self, name: str) -> bytes | None:
        for header_name, value in self.headers:
            if header_name == name:
                return value
        return None


UNKEYED = "_unkeyed"  # DLQ record key of a dead letter whose record named no tenant
MAX_DLQ_KEY_CHARS = 512  # a longer original key is replaced by its tenant (ids stay URL-sized)


def dead_letter_key(envelope: dict[str, Any]) -> str:
    """The key of a dead letter's DLQ record: the original key, so a key's dead letters stay in
    order on one partition; for a record without a (UTF-8) key, the tenant it names, else
    `_unkeyed`. Every DLQ record has a key, so operator actions can be co-partitioned with it.
    """
    tenant, key = envelope["tenant"], envelope["original_key"]
    keyed = (
        tenant is not None
        and key is not None
        and envelope.get("original_key_encoding", "utf8") == "utf8"
        and len(key) <= MAX_DLQ_KEY_CHARS
        and (key == tenant or key.startswith(tenant + SEPARATOR))
    )
    return str(key) if keyed else str(tenant or UNKEYED)


def dlq_id(topic: str, partition: int, offset: int) -> str:
    """A dead letter's id: its source position, so dead-lettering the same record twice (a
    crash between the DLQ send and the commit) yields one entry in the DLQ index."""
    return f"{topic}:{partition}:{offset}"


def tenant_of_record(record: SourceRecord) -> str | None:
    """The tenant the record names: its key's first part, else its `tenant` header (None when
    neither is a valid tenant id)."""
    for raw in (record.key, record.header(TENANT_HEADER)):
        if not raw:
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            continue
        tenant = text.split(SEPARATOR, 1)[0] if raw is record.key else text
        if is_tenant(tenant):  # a foreign producer's key may name no valid tenant
            return tenant
    return None


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _text_or_b64(raw: bytes) -> tuple[str, str]:
    try:
        return raw.decode("utf-8"), "utf8"
    except UnicodeDecodeError:
        return _b64(raw), "base64"


def _truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    marker = f"... [{len(text) - limit + 40} characters cut]"
    return text[: limit - len(marker)] + marker


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def format_stack(error: BaseException) -> str:
    """The error's traceback as text (empty when it was never raised)."""
    return "".join(traceback.format_exception(type(error), error, error.__traceback__))


def qualified_name(error: BaseException) -> str:
    cls = type(error)
    return f"{cls.__module__}.{cls.__qualname__}"


def dead_letter_envelope(
    record: SourceRecord,
    *,
    flow: str,
    consumer_group: str,
    reason: DeadLetterReason,
    error: BaseException,
    attempts: int,
    failed_at: datetime,
) -> dict[str, Any]:
    """The `dlq_envelope` event for `record` (raw bytes kept exactly, base64 where not text)."""
    key_text, key_encoding = _text_or_b64(record.key) if record.key is not None else (None, "utf8")
    value: str | None = None if record.value is None else _b64(record.value)
    return {
        "dlq_id": dlq_id(record.topic, record.partition, record.offset),
        "tenant": tenant_of_record(record),
        "flow": flow,
        "reason": reason.value,
        "original_key": key_text,
        "original_key_encoding": key_encoding,
        "original_value": value,
        "original_value_encoding": "base64",
        "original_headers": [
            {"name": name, "value": None if raw is None else _b64(raw)}
            for name, raw in record.headers
        ],
        "original_timestamp": max(record.timestamp_ms, 0),
        "source_topic": record.topic,
        "source_partition": record.partition,
        "source_offset": record.offset,
        "consumer_group": consumer_group,
        "error_class": qualified_name(error),
        "error_message": _truncate(str(error) or qualified_name(error), MAX_MESSAGE_CHARS),
        "stack": _truncate(format_stack(error), MAX_STACK_CHARS),
        "attempts": max(attempts, 1),
        "failed_at": _rfc3339(failed_at),
    }


def original_record(envelope: dict[str, Any]) -> SourceRecord:
    """The record a dead letter carries, rebuilt byte for byte (for replay and tests)."""
    key = envelope["original_key"]
    if key is not None:
        encoding = envelope.get("original_key_encoding", "utf8")
        key = base64.b64decode(key) if encoding == "base64" else key.encode("utf-8")
    value = envelope["original_value"]
    if value is not None:
        encoding = envelope["original_value_encoding"]
        value = base64.b64decode(value) if encoding == "base64" else value.encode("utf-8")
    headers = tuple(
        (h["name"], None if h["value"] is None else base64.b64decode(h["value"]))
        for h in envelope["original_headers"]
    )
    return SourceRecord(
        topic=envelope["source_topic"],
        partition=envelope["source_partition"],
        offset=envelope["source_offset"],
        key=key,
        value=value,
        headers=headers,
        timestamp_ms=envelope["original_timestamp"],
    )
