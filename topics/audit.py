"""Emit an audit event: one call for every admin action and decision, from any component.

    await emit_audit(producer, actor="alice", tenant="acme", action="dlq.replay",
                     resource="memory.wal.dlq:2:1041", outcome="ok",
                     request_id=request_id, traceparent=traceparent)

`producer_or_settings` is the caller's `EventProducer` (the gateway's, a flow's) or, for a
one-off command, `Settings` (a producer is made and closed for the call). It returns once the
broker acknowledged the event, and raises when it did not (BrokerUnavailable: retry, or refuse
the action, since an admin action that cannot be audited should not pass silently). The event is
validated against `agent_audit` and keyed by its tenant, like every produce. `emit_audit_sync`
does the same from synchronous code (the CLI).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from processors.audit import Outcome, audit_event
from soma.settings import Settings
from topics.producer import EventProducer
from topics.records import RecordContext

AUDIT_TOPIC = "agent.audit.v1"


async def emit_audit(
    producer_or_settings: EventProducer | Settings,
    actor: str,
    tenant: str,
    action: str,
    resource: str,
    outcome: Outcome,
    request_id: str | None = None,
    traceparent: str | None = None,
    *,
    reason: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Produce one `agent_audit` event and wait for the broker's ack; returns the event.

    `action` is dotted lowercase (`topics.apply`, `dlq.replay`); `resource` what it acted on;
    `outcome` ok|failed for actions, allow|deny for decisions; `details` counts, ranges, diffs.
    """
    event = audit_event(
        actor=actor,
        tenant=tenant,
        action=action,
        resource=resource,
        outcome=outcome,
        request_id=request_id,
        traceparent=traceparent,
        reason=reason,
        details=details,
    )
    ctx = RecordContext(tenant=tenant, request_id=request_id, traceparent=traceparent)
    if isinstance(producer_or_settings, EventProducer):
        await producer_or_settings.send(AUDIT_TOPIC, event, ctx)
        return event
    producer = EventProducer(producer_or_settings)
    try:
        await producer.send(AUDIT_TOPIC, event, ctx)
    finally:
        await asyncio.to_thread(producer.close)
    return event


def emit_audit_sync(
    settings: Settings,
    actor: str,
    tenant: str,
    action: str,
    resource: str,
    outcome: Outcome,
    request_id: str | None = None,
    traceparent: str | None = None,
    *,
    reason: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """`emit_audit` for synchronous callers (the CLI): runs it in a fresh event loop."""
    return asyncio.run(
        emit_audit(
            settings,
            actor,
            tenant,
            action,
            resource,
            outcome,
            request_id,
            traceparent,
            reason=reason,
            details=details,
        )
    )
