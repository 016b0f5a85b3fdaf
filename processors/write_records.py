"""The records of a planned write: its WAL record once acknowledged, its outbox item otherwise.

Nothing here reads a clock: the caller passes the moments.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from processors.backend_policy import BackendHealth, BreakerState, HealthMode
from processors.memory import MemoryWrite, RememberResult
from processors.turn_links import PlannedLink
from processors.write_plan import PlannedWrite, parse_time, rfc3339


def wal_record(planned: PlannedWrite, result: RememberResult, acknowledged_at: datetime) -> dict:
    """The `memory_wal` record of a write the backend acknowledged."""
    written, write, event = planned.write_event, planned.write, planned.event
    record: dict[str, Any] = {
        "tenant": write.tenant,
        "idempotency_key": planned.idempotency_key,
        "event_id": written["event_id"],
        "session_id": written["session_id"],
        "source_topic": event.topic,
        "source_partition": event.partition,
        "source_offset": event.offset,
        "memory_id": None,  # neither backend names its memories; the key and coordinate do
        "memory_key": write.key,
        "namespace": write.namespace,
        "universe": write.universe,
        "memory_type": written.get("memory_type") or "episodic",
        "payload": dict(write.value),
        "metadata": dict(write.meta),
        "coordinate": list(result.coordinate) if result.coordinate else None,
        "acknowledged_at": rfc3339(acknowledged_at),
        "event_time": rfc3339(planned.event_time),
        "backend": result.backend,
    }
    for name in ("request_id", "trace_context"):
        if written.get(name) is not None:
            record[name] = written[name]
    return record


def outbox_item(
    planned: PlannedWrite,
    links: Sequence[PlannedLink],
    *,
    error: str | None,
    attempts: int,
    now: datetime,
) -> dict:
    """The `outbox_item` of a write the backend could not take now, with the links it owes."""
    item: dict[str, Any] = {
        "tenant": planned.write.tenant,
        "idempotency_key": planned.idempotency_key,
        "write": dict(planned.write_event),
        "attempts": attempts,
        "first_failed_at": rfc3339(now),
        "last_error": error[:65536] if error else None,
        "next_attempt_at": rfc3339(now),  # the drain flow applies its own backoff
    }
    if links:
        item["links"] = [
            {"from_key": link.from_key, "to_key": link.to_key, "type": link.type.value}
            for link in links
        ]
    return item


def divert_to_outbox(health: BackendHealth | None) -> bool:
    """True when writes should go straight to the outbox: the probe says the backend is down.

    While the breaker is open or half-open the call is still made: the breaker refuses it at
    once (and the write goes to the outbox then) or lets its one trial through, and only a
    trial can close it again.
    """
    return (
        health is not None
        and health.mode is HealthMode.DOWN
        and health.breaker is BreakerState.CLOSED
    )


def wal_record_of_parked(
    item: Mapping[str, Any],
    write: MemoryWrite,
    result: RememberResult,
    source: Mapping[str, Any],
    acknowledged_at: datetime,
) -> dict:
    """The `memory_wal` record of a parked write the outbox drain delivered.

    The same record `wal_record` makes for a direct write, except its source: the
    `memory.outbox` record the write was parked as (the original event's position is not kept).
    """
    written = item["write"]
    occurred = parse_time(written.get("occurred_at")) or parse_time(item.get("first_failed_at"))
    record: dict[str, Any] = {
        "tenant": write.tenant,
        "idempotency_key": str(item["idempotency_key"]),
        "event_id": written["event_id"],
        "session_id": written["session_id"],
        "source_topic": source["topic"],
        "source_partition": int(source["partition"]),
        "source_offset": int(source["offset"]),
        "memory_id": None,
        "memory_key": write.key,
        "namespace": write.namespace,
        "universe": write.universe,
        "memory_type": written.get("memory_type") or "episodic",
        "payload": dict(write.value),
        "metadata": dict(write.meta),
        "coordinate": list(result.coordinate) if result.coordinate else None,
        "acknowledged_at": rfc3339(acknowledged_at),
        "event_time": rfc3339(occurred or acknowledged_at),
        "backend": result.backend,
    }
    for name in ("request_id", "trace_context"):
        if written.get(name) is not None:
            record[name] = written[name]
    return record
