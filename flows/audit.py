"""Always-on flow: append every agent.audit.v1 event to its tenant's hash chain in Postgres."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from flows.spec import BatchResult, FlowContext, FlowSpec
from processors.intake import Event
from soma.settings import Settings


async def append_to_chains(events: Sequence[Event], ctx: FlowContext) -> BatchResult:
    """Append each tenant's events in source order, one transaction per tenant.

    The topic is keyed by tenant, so a tenant's events arrive on one partition in the order
    they were produced, and the chain keeps that order. Appending skips event ids already in
    the chain: a redelivery (at-least-once) or a replay never forks it. The store being down
    is a TransientError (retried in place); an event the database refuses (a NUL character
    jsonb cannot hold) raises, and the kit dead-letters it alone.
    """
    from state.audit.store import Appended  # the flow module stays cheap to import

    by_tenant: dict[str, list[Any]] = {}
    for event in events:
        by_tenant.setdefault(event.tenant, []).append(
            Appended(event.value, event.partition, event.offset)
        )
    for tenant, items in by_tenant.items():
        await ctx.resources.append(tenant, items)
    return BatchResult()


@asynccontextmanager
async def _resources(settings: Settings) -> AsyncIterator[Any]:
    from state.audit.store import AuditStore

    async with AuditStore(settings.postgres_dsn) as store:
        yield store


SPEC = FlowSpec(
    name="audit",
    app_id="soma-audit",
    description="agent.audit.v1 into per-tenant hash chains (Postgres), for queries, NDJSON "
    "export and `soma audit verify`",
    sources=("agent.audit.v1",),
    handler=append_to_chains,
    resources=_resources,
)
