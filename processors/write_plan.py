"""Write plans of the write-through flow: each source event as one memory write, every time alike.

Every source event becomes one `memory_write` object (the schema's shape): explicit writes from
`memory.requests` already are one; conversation messages and tool results are turned into one,
keyed by the upstream idempotency key. That object is what an outbox item carries, and
`memory_write_to_write` turns it into the backend's `MemoryWrite`, so a write replayed from the
outbox has the same key and the same content as the write-through would have sent. Nothing
here reads a clock: keys and contents depend on the event alone, so a retry or a replay
produces the same write. Its WAL record and outbox item are in `processors/write_records.py`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from processors.intake import Event
from processors.memory import MemoryWrite
from processors.memory_keys import (
    DEFAULT_UNIVERSE,
    MemoryKeyError,
    MemoryScope,
    hash16,
    upstream_idempotency_key,
)
from processors.tracing import parse_traceparent

# What each source topic carries (registry names).
SOURCE_KINDS = {
    "conversation.inbound": "conversation",
    "conversation.outbound": "conversation",
    "tool.results": "tool_result",
    "memory.requests": "memory_write",
}
MAX_IDEMPOTENCY_KEY_CHARS = 200  # the memory_wal / outbox_item schemas' bound (record keys)
_SESSION_PART = re.compile(r"[!-.0-}]{1,64}")  # printable ASCII without '/' and '~'
_REQUEST_ID = re.compile(r"[!-~]{1,128}")
_EPOCH = datetime.fromtimestamp(0, tz=UTC)


class WriteRefused(ValueError):
    """The event is valid under its schema but cannot become a memory write (dead-letter it)."""


@dataclass(frozen=True)
class PlannedWrite:
    """One source event on its way to the memory backend."""

    event: Event
    write_event: Mapping[str, Any]  # the memory_write object (what the outbox carries)
    write: MemoryWrite
    event_time: datetime

    @property
    def idempotency_key(self) -> str:
        return str(self.write_event["idempotency_key"])


def rfc3339(moment: datetime) -> str:
    """`2025-01-31T12:00:00.123Z`: the timestamp form every event carries."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(text: object) -> datetime | None:
    """An RFC 3339 timestamp as an aware datetime (UTC when it names no offset), else None."""
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text.strip().upper().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def event_time(event: Event) -> datetime:
    """When the event happened: its `occurred_at`, else the record's timestamp (both stable)."""
    stated = parse_time(event.value.get("occurred_at"))
    if stated is not None:
        return stated
    if event.record.timestamp_ms > 0:
        return datetime.fromtimestamp(event.record.timestamp_ms / 1000, tz=UTC)
    return _EPOCH


def session_key_part(session_id: str) -> str:
    """The session as an idempotency-key part: itself when it is short printable ASCII without
    '/' and '~', else `~` + its hash16 (a kept session holds no `~`, so the two never collide)."""
    return session_id if _SESSION_PART.fullmatch(session_id) else "~" + hash16(session_id)


def _header_text(event: Event, name: str) -> str | None:
    raw = event.record.header(name)
    return raw.decode("latin-1") if raw else None


def _trace_context(event: Event) -> dict[str, str] | None:
    stated = event.value.get("trace_context")
    if isinstance(stated, Mapping) and parse_traceparent(stated.get("traceparent")):
        return dict(stated)
    header = parse_traceparent(_header_text(event, "traceparent"))
    return {"traceparent": header.header()} if header else None


def _request_id(event: Event) -> str | None:
    for candidate in (event.value.get("request_id"), _header_text(event, "request_id")):
        if isinstance(candidate, str) and _REQUEST_ID.fullmatch(candidate):
            return candidate
    return None


def _derived_payload(kind: str, value: Mapping[str, Any]) -> dict[str, Any]:
    """The memory of a conversation message or tool result (what recall searches)."""
    common = {"kind": kind, "session_id": value["session_id"], "event_id": value["event_id"]}
    if kind == "conversation":
        payload = {**common, "role": value["role"], "message": value["message"]}
        if value.get("attachments"):
            payload["attachments"] = list(value["attachments"])
        return payload
    payload = {**common, "tool_name": value["tool_name"], "status": value["status"]}
    payload["result"] = value.get("payload")
    for name in ("error", "request_event_id", "execution_time_ms"):
        if value.get(name) is not None:
            payload[name] = value[name]
    return payload


def memory_write_event(event: Event, kind: str, namespace: str) -> dict[str, Any]:
    """The `memory_write` object of a source event (raises WriteRefused when it has none)."""
    value = event.value
    if kind == "memory_write":
        return {"namespace": namespace, **value}
    if kind not in ("conversation", "tool_result"):
        raise WriteRefused(f"no memory write for events of kind {kind!r}")
    moment = event_time(event)
    role = str(value["role"]) if kind == "conversation" else "tool"
    try:
        key = upstream_idempotency_key(
            tenant=event.tenant,
            namespace=namespace,
            session_id=session_key_part(str(value["session_id"])),
            role=role,
            ts_seconds=moment.timestamp(),
            base=str(value["event_id"]),  # unique per event, the same on every replay
        )
    except MemoryKeyError as exc:
        raise WriteRefused(str(exc)) from None
    if len(key) > MAX_IDEMPOTENCY_KEY_CHARS:
        raise WriteRefused(
            f"idempotency key of {len(key)} characters exceeds {MAX_IDEMPOTENCY_KEY_CHARS}: "
            "shorten SOMA_NAMESPACE or the tenant id"
        )
    written: dict[str, Any] = {
        "event_id": value["event_id"],
        "tenant": event.tenant,
        "session_id": value["session_id"],
        "idempotency_key": key,
        "namespace": namespace,
        "memory_type": "episodic",
        "payload": _derived_payload(kind, value),
        "metadata": dict(value.get("metadata") or {}),
        "occurred_at": rfc3339(moment),
    }
    if value.get("persona_id") is not None:
        written["persona_id"] = value["persona_id"]
    if (request_id := _request_id(event)) is not None:
        written["request_id"] = request_id
    if (trace := _trace_context(event)) is not None:
        written["trace_context"] = trace
    return written


def memory_write_to_write(written: Mapping[str, Any], default_namespace: str) -> MemoryWrite:
    """The backend write of a `memory_write` object (raises WriteRefused when it cannot be one).

    Only the memory's identity goes into value and meta: request ids, event ids of explicit
    writes and timestamps stay out, so two deliveries of one write send the same content.
    """
    trace = parse_traceparent((written.get("trace_context") or {}).get("traceparent"))
    value = dict(written["payload"])
    if isinstance(written.get("content"), str) and "content" not in value:
        value["content"] = written["content"]
    meta: dict[str, Any] = {"memory_type": written.get("memory_type") or "episodic"}
    for name in ("persona_id", "agent_profile"):
        if written.get(name) is not None:
            meta[name] = written[name]
    if written.get("metadata"):
        meta["metadata"] = dict(written["metadata"])
    try:
        scope = MemoryScope(
            str(written["tenant"]),
            str(written.get("namespace") or default_namespace),
            str(written.get("universe") or DEFAULT_UNIVERSE),
        )
        return MemoryWrite.for_event(
            scope,
            str(written["idempotency_key"]),
            value,
            meta=meta,
            session_id=str(written["session_id"]),
            occurred_at=parse_time(written.get("occurred_at")),
            trace_id=trace.trace_id if trace else None,
            traceparent=trace.header() if trace else None,
        )
    except ValueError as exc:  # MemoryKeyError is one: a scope part the backend cannot hold
        raise WriteRefused(str(exc)) from None


def plan_write(event: Event, kind: str, namespace: str) -> PlannedWrite:
    """The planned write of one admitted source event (raises WriteRefused)."""
    written = memory_write_event(event, kind, namespace)
    write = memory_write_to_write(written, namespace)
    return PlannedWrite(event, written, write, event_time(event))
