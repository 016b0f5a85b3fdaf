"""Always-on flow: copy every memory.wal record into the replica, idempotent on the memory key."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from flows.spec import BatchResult, FlowContext, FlowSpec, Rejected
from processors.intake import Event
from processors.memory import MemoryWrite
from processors.memory_keys import MemoryKeyError
from processors.replication import replica_write
from soma.settings import Settings


async def replicate(events: Sequence[Event], ctx: FlowContext) -> BatchResult:
    """Write the batch to the replica in one call; only records the replica refuses are rejected.

    The replica being down raises BackendUnavailable, a TransientError: the kit retries the
    batch in place with jittered backoff, so nothing is dead-lettered for an outage. Writes
    are idempotent on the memory key, so a retry or a replay after a crash changes nothing.
    """
    from state.memory.errors import BackendRejected  # the flow module stays cheap to import

    replication = ctx.resources
    rejected: list[Rejected] = []
    pending: list[tuple[Event, MemoryWrite]] = []
    for event in events:
        try:
            pending.append(
                (event, replica_write(event.value, default_namespace=ctx.settings.namespace))
            )
        except (MemoryKeyError, ValueError, KeyError) as exc:
            rejected.append(Rejected(event, exc))
    while pending:
        try:
            results = await replication.replica.remember_batch([w for _, w in pending])
        except BackendRejected as exc:
            if exc.index is not None and 0 <= exc.index < len(pending):
                rejected.append(Rejected(pending.pop(exc.index)[0], exc))
                continue
            if len(pending) > 1:
                raise  # no culprit named: the kit halves the batch until it stands alone
            rejected.append(Rejected(pending.pop()[0], exc))
            continue
        replication.replicated([e for e, _ in pending], results)
        break
    return BatchResult(rejected=rejected)


@asynccontextmanager
async def _resources(settings: Settings) -> AsyncIterator[Any]:
    from flows.runtime.replication import open_replication

    async with open_replication(settings) as replication:
        yield replication


async def _health(replication: Any) -> Mapping[str, Any]:
    report: Mapping[str, Any] = await replication.health()
    return report


SPEC = FlowSpec(
    name="replication",
    app_id="soma-replication",
    description="memory.wal into the replica (Postgres at SOMA_REPLICA_DSN, or a second "
    "SomaBrain), idempotent on the memory key; lag per tenant on /health and /metrics",
    sources=("memory.wal",),
    handler=replicate,
    resources=_resources,
    health=_health,
)
