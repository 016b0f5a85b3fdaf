"""Write-through test traffic: turns (user, reply, tool result) and explicit memory writes."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from processors.dead_letters import SourceRecord
from processors.intake import Event
from processors.tracing import new_traceparent


@dataclass
class Turn:
    """One turn of a session: a user message, an assistant reply and a tool result, one trace."""

    tenant: str
    session_id: str
    n: int
    traceparent: str = field(default_factory=lambda: new_traceparent().header())

    def _common(self) -> dict[str, Any]:
        return {
            "event_id": str(uuid.uuid4()),
            "session_id": self.session_id,
            "tenant": self.tenant,
            "trace_context": {"traceparent": self.traceparent},
        }

    def user(self) -> dict[str, Any]:
        return {**self._common(), "role": "user", "message": f"question {self.n} about herons"}

    def reply(self) -> dict[str, Any]:
        return {**self._common(), "role": "assistant", "message": f"answer {self.n}: otters"}

    def tool_result(self) -> dict[str, Any]:
        return {
            **self._common(),
            "tool_name": "search",
            "status": "ok",
            "payload": {"hits": [f"kingfisher {self.n}"]},
            "metadata": {},
        }

    def events(self) -> list[tuple[str, dict[str, Any]]]:
        """(registry topic, event) of the whole turn."""
        return [
            ("conversation.inbound", self.user()),
            ("conversation.outbound", self.reply()),
            ("tool.results", self.tool_result()),
        ]


def memory_write(tenant: str, session_id: str, n: int, **extra: Any) -> dict[str, Any]:
    """An explicit memory write as the gateway produces it to memory.requests."""
    return {
        "event_id": str(uuid.uuid4()),
        "tenant": tenant,
        "session_id": session_id,
        "idempotency_key": f"explicit-{tenant}-{n}-{uuid.uuid4().hex[:8]}",
        "namespace": "somastream",
        "memory_type": "semantic",
        "payload": {"fact": f"fact number {n} about tea"},
        **extra,
    }


def as_event(
    topic: str,
    value: dict[str, Any],
    *,
    partition: int = 0,
    offset: int = 0,
    key: str | None = None,
    headers: tuple[tuple[str, bytes | None], ...] = (),
    timestamp_ms: int = 1_700_000_000_000,
) -> Event:
    """An admitted event as the kit hands it to a handler (no broker involved)."""
    record_key = key or f"{value['tenant']}/{value['session_id']}"
    record = SourceRecord(
        topic=topic,
        partition=partition,
        offset=offset,
        key=record_key.encode(),
        value=None,
        headers=headers,
        timestamp_ms=timestamp_ms,
    )
    return Event(record=record, key=record_key, tenant=value["tenant"], value=value)
