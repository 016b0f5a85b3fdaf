"""WAL records to replica writes: the key, value and time a replica stores for one WAL record."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson

from processors.memory import MemoryWrite
from processors.memory_keys import DEFAULT_UNIVERSE, MemoryKeyError, MemoryScope, parse_memory_key
from processors.tracing import parse_traceparent


def wal_scope(wal: Mapping[str, Any], *, default_namespace: str) -> MemoryScope:
    """The scope the primary stored the write in.

    `memory_id` is the primary's memory key when the backend reports it (it carries the
    universe, which the WAL has no field for); otherwise the scope is the WAL's tenant and
    namespace (the settings' namespace when absent) in the default universe, which is how the
    write path builds it.
    """
    tenant = str(wal["tenant"])
    memory_id = wal.get("memory_id")
    if isinstance(memory_id, str):
        try:
            scope, rest = parse_memory_key(memory_id)
        except MemoryKeyError:
            scope, rest = None, None
        if scope is not None and scope.tenant == tenant and rest == wal["idempotency_key"]:
            return scope
    namespace = wal.get("namespace") or default_namespace
    return MemoryScope(tenant, str(namespace), DEFAULT_UNIVERSE)


def replica_write(wal: Mapping[str, Any], *, default_namespace: str) -> MemoryWrite:
    """The write that puts one WAL record into a replica (or back into the primary).

    Raises MemoryKeyError or ValueError when the record cannot form a memory write (a
    namespace with '/', an empty payload): such a record is dead-lettered, never retried.
    """
    scope = wal_scope(wal, default_namespace=default_namespace)
    trace = parse_traceparent((wal.get("trace_context") or {}).get("traceparent"))
    return MemoryWrite.for_event(
        scope,
        str(wal["idempotency_key"]),
        dict(wal["payload"]),
        session_id=wal.get("session_id"),
        occurred_at=parse_time(str(wal["event_time"])),
        trace_id=trace.trace_id if trace else None,
        meta={"memory_type": wal["memory_type"]} if wal.get("memory_type") else {},
    )


def parse_time(text: str) -> datetime:
    """An RFC 3339 timestamp with an offset (`...Z` included) as an aware datetime."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no UTC offset")
    return moment


def payload_hash(value: Any) -> str:
    """sha256 of a JSON value in canonical form (sorted keys, no spaces): equal values, equal hash.

    How a replica is compared with its primary: same keys, same payload hashes.
    """
    try:
        text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # integers beyond 64 bits (a jsonb value can hold them): slower, same form
        text = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()
    return hashlib.sha256(text).hexdigest()
