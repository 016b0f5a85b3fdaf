"""Audit events: who did what to which resource, with what outcome (`agent_audit` schema)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from processors.tracing import parse_traceparent

Outcome = Literal["ok", "failed", "allow", "deny"]
OUTCOMES: tuple[str, ...] = ("ok", "failed", "allow", "deny")
# Actions that concern the whole plane, not one tenant (topics apply, schema upgrades), are
# audited under this tenant: an admin token of tenant `system` reads them.
SYSTEM_TENANT = "system"


def audit_event(
    *,
    actor: str,
    tenant: str,
    action: str,
    resource: str,
    outcome: Outcome,
    request_id: str | None = None,
    traceparent: str | None = None,
    reason: str | None = None,
    details: Mapping[str, Any] | None = None,
    event_id: str | None = None,
    occurred_at: datetime | None = None,
) -> dict[str, Any]:
    """The `agent_audit` event of one action (validated by the producer, not here).

    `resource` is the schema's `target`. `outcome` allow/deny is a decision (`decision` field);
    ok/failed is the result of an action that is not a decision (`decision` "n/a"); it is kept in
    `details.outcome` either way so every event can be filtered on it.
    """
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {OUTCOMES}, got {outcome!r}")
    moment = occurred_at or datetime.now(UTC)
    event: dict[str, Any] = {
        "event_id": event_id or str(uuid.uuid4()),
        "tenant": tenant,
        "actor": actor,
        "action": action,
        "decision": outcome if outcome in ("allow", "deny") else "n/a",
        "target": resource,
        "details": {**(details or {}), "outcome": outcome},
        "occurred_at": rfc3339(moment),
    }
    if reason is not None:
        event["reason"] = reason
    if request_id:
        event["request_id"] = request_id
    trace = parse_traceparent(traceparent)
    if trace is not None:
        event["trace_context"] = {"traceparent": trace.header()}
    return event


def rfc3339(moment: datetime) -> str:
    """`2025-03-14T09:26:53.589Z`: UTC, milliseconds, as every event's time field."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
