"""Always-on flow: every message, tool result and memory write to the memory backend, then the WAL.

Per batch (`processors/write_batch.py` plans it): replays are skipped; the turn links the batch
completes are recorded, then the writes in one `remember_batch`; each acknowledged write
becomes a `memory.wal` record, sent by the kit inside its commit order (so the WAL never names
a write the backend does not have, and never misses one whose offset is committed), and the
recall-cache generation of every tenant/namespace the batch wrote is bumped before the batch
returns, so no cached recall that lacks the writes stays reachable. When the
backend is down (probe down, breaker open, BackendUnavailable) the writes become
`memory.outbox` items carrying everything needed to replay them, links included, and the
partition moves on. A write the backend rejects is dead-lettered.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from flows.kit.handover import Handover
from flows.kit.spans import EventSpans
from flows.spec import (
    BatchResult,
    FlowContext,
    FlowSpec,
    Output,
    Rejected,
    StatePage,
    TableSpec,
)
from processors.agent_profiles import NO_AGENTS, SessionAgents, fold_agents
from processors.intake import Event
from processors.keys import KeyRule
from processors.memory import MemoryLink
from processors.source_positions import NO_POSITIONS, SourcePositions, position_key
from processors.turn_links import NO_TURNS, PlannedLink, SessionTurns
from processors.write_batch import BatchPlan, plan_batch
from processors.write_plan import SOURCE_KINDS
from processors.write_records import divert_to_outbox, outbox_item, wal_record
from soma.settings import Settings
from state.memory.backend import MemoryBackend
from state.memory.errors import BackendRejected, BackendUnavailable
from state.memory.watch import WatchedBackend, watched_backend  # backends' clients load lazily
from state.recall_cache import GenerationBumper, redis_client

log = logging.getLogger(__name__)

SPEC_NAME = "write-through"
WAL, OUTBOX = "memory.wal", "memory.outbox"
SESSIONS, POSITIONS, AGENTS = "session_turns", "source_positions", "session_agents"
LINK_CONCURRENCY = 4  # link calls in flight per batch: well inside the backend's pool


@dataclass
class WriteThroughResources:
    """What one worker keeps: the watched backend, its hand-over checks, the recall-cache
    generation bumps, whether it parks."""

    watched: WatchedBackend
    handover: Handover
    bumper: GenerationBumper
    parking: bool = False


@asynccontextmanager
async def open_backend(settings: Settings) -> AsyncIterator[WriteThroughResources]:
    """The worker's memory backend, opened once and probed in the background, and its one
    Redis client (recall-cache generations)."""
    redis = redis_client(settings)
    try:
        async with watched_backend(settings) as watched:
            handover = Handover(SPEC.name, SPEC.outputs, window=SPEC.batch.max_events)
            bumper = GenerationBumper(redis, timeout_s=settings.recall_cache_timeout_s)
            yield WriteThroughResources(watched, handover, bumper)
    finally:
        await redis.aclose()


async def write_through(events: Sequence[Event], ctx: FlowContext) -> BatchResult:
    """Plan the batch, deliver its writes (or park them), and return WAL/outbox outputs."""
    resources: WriteThroughResources = ctx.resources
    prefix = ctx.settings.topic_prefix
    keys = {p: position_key(p, ctx.partitions) for p in {e.partition for e in events}}
    found = {p: ctx.table(POSITIONS).get(key) for p, key in keys.items()}
    plan = plan_batch(
        events,
        kinds={f"{prefix}{topic}": kind for topic, kind in SOURCE_KINDS.items()},
        namespace=ctx.settings.namespace,
        partitions=ctx.partitions,
        sessions=ctx.table(SESSIONS).get,
        positions=ctx.table(POSITIONS).get,
        now_ms=int(time.time() * 1000),
    )
    rejected = [Rejected(event, error) for event, error in plan.refused]
    agents = fold_agents(
        ctx.table(AGENTS).get,
        [(e.key, e.tenant, e.value, e.record.timestamp_ms) for e in events],
    )
    writes: dict[str, Any] = {SESSIONS: plan.sessions, POSITIONS: plan.positions, AGENTS: agents}
    outputs: list[Output] = []
    checked: set[int] = set()
    if plan.writes:
        spans = EventSpans(SPEC_NAME, [(p.event, p.write.traceparent) for p in plan.writes])
        plan.writes = [
            replace(p, write=replace(p.write, traceparent=tp)) if tp != p.write.traceparent else p
            for p, tp in zip(plan.writes, spans.traceparents, strict=True)
        ]
        try:
            outputs, refused = await _deliver(resources, plan)
        except BaseException as exc:
            spans.end("failed", exc)
            raise
        spans.end(_outcome(outputs, refused))
        rejected.extend(refused)
        handover = resources.handover
        outputs, checked = await handover.drop_sent(ctx.settings, outputs, found, events)
    written = {p: plan.positions[key] for p, key in keys.items()}
    resources.handover.finish(found, written, checked)
    return BatchResult(writes=writes, outputs=outputs, rejected=rejected)


async def _deliver(
    resources: WriteThroughResources, plan: BatchPlan
) -> tuple[list[Output], list[Rejected]]:
    backend = resources.watched.backend
    health = resources.watched.health()
    if health is not None and divert_to_outbox(health):
        return _park(resources, plan, f"memory backend down: {health.detail}", attempts=0), []
    try:
        # Links first: if they fail the batch is parked whole, and no write is ever stored
        # without the WAL record or outbox item that accounts for it.
        await _record_links(backend, plan.all_links())
        results = await backend.remember_batch([planned.write for planned in plan.writes])
    except BackendUnavailable as exc:
        return _park(resources, plan, str(exc), attempts=1), []
    except BackendRejected as exc:
        if len(plan.writes) == 1:
            return [], [Rejected(plan.writes[0].event, exc)]
        raise  # the kit halves the batch until the rejected write stands alone
    if resources.parking:
        resources.parking = False
        log.warning("write-through: memory backend takes writes again; WAL resumes")
    # Acknowledged: cached recalls of these scopes are now stale. Bounded by the cache timeout
    # and never raising; a failed bump is retried with the next batch (state/recall_cache.py).
    await resources.bumper.bump({(p.write.tenant, p.write.namespace) for p in plan.writes})
    acknowledged = datetime.now(UTC)
    outputs = [
        Output(WAL, wal_record(planned, result, acknowledged), cause=planned.event)
        for planned, result in zip(plan.writes, results, strict=True)
    ]
    return outputs, []


def _outcome(outputs: Sequence[Output], refused: Sequence[Rejected]) -> str:
    if refused:
        return "rejected"
    return "wal" if any(output.topic == WAL for output in outputs) else "outbox"


def _park(
    resources: WriteThroughResources, plan: BatchPlan, error: str, *, attempts: int
) -> list[Output]:
    if not resources.parking:
        resources.parking = True  # one line per outage, not one per batch
        log.warning("write-through: parking writes in %s (%s)", OUTBOX, error)
    now = datetime.now(UTC)
    return [
        Output(
            OUTBOX,
            outbox_item(planned, links, error=error, attempts=attempts, now=now),
            cause=planned.event,
        )
        for planned, links in zip(plan.writes, plan.links, strict=True)
    ]


async def _record_links(backend: MemoryBackend, links: Sequence[PlannedLink]) -> None:
    """Record links, a few at a time; the first failure cancels the rest and is raised."""
    if not links:
        return
    gate = asyncio.Semaphore(LINK_CONCURRENCY)

    async def one(link: MemoryLink) -> None:
        async with gate:
            await backend.link(link)

    try:
        async with asyncio.TaskGroup() as group:
            for planned in links:
                group.create_task(one(_memory_link(planned)))
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None


def _memory_link(planned: PlannedLink) -> MemoryLink:
    # Both ends of a turn are written in one scope (tenant, SOMA_NAMESPACE, default universe).
    return MemoryLink.between(planned.from_key, planned.to_key, planned.type.value)


SPEC = FlowSpec(
    name=SPEC_NAME,
    app_id="soma-write-through",
    description="conversation, tool and memory events to the memory backend exactly once in "
    "effect; acknowledged writes to memory.wal, unreachable backend to memory.outbox",
    sources=tuple(SOURCE_KINDS),
    handler=write_through,
    # Positions first: the kit writes tables in this order right after the outputs are
    # acknowledged, so the local store learns the batch is finished as early as it can; turn
    # state lost to a crash in between is rebuilt by the replay (processors/write_batch.py).
    tables=(
        TableSpec(POSITIONS, SourcePositions.to_dict, SourcePositions.from_dict, NO_POSITIONS),
        TableSpec(SESSIONS, SessionTurns.to_dict, SessionTurns.from_dict, NO_TURNS),
        # The agent profiles each session named: GET /v1/agents/profiles scans this page.
        TableSpec(AGENTS, SessionAgents.to_dict, SessionAgents.from_dict, NO_AGENTS),
    ),
    state_pages=(
        StatePage(
            "agent-profiles",
            table=AGENTS,
            key_rule=KeyRule.TENANT_SESSION,
            summary="Agent profiles a session's events named",
            public=False,  # read by gateway/routes/agents.py, tenant-scoped there
            order_by="last_seen",
        ),
    ),
    outputs=(WAL, OUTBOX),
    resources=open_backend,
)
