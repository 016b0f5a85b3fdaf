"""Always-on flow: writes parked in memory.outbox are delivered once the memory backend takes them.

Batches move each `memory.outbox` record into the `outbox` table (one row per write, with its
retry state) and commit. The kit's sweep (flows/kit/sweeps.py) then visits each owned partition
every second: rows whose next attempt is due go to the backend in `remember_batch` calls of at
most 25, oldest parked first, as many as the backend's health allows (processors/outbox.py).
A delivered write becomes its `memory.wal` record, acknowledged by the broker before its row
is deleted; a failed one gets its next attempt time (capped full-jitter backoff per item) and
its last error; a write the backend rejects, or that keeps failing past the policy's limit,
is dead-lettered to `memory.outbox.dlq` as the outbox record that parked it.

Exactly one WAL record per write: the sweep sends only rows whose source record is committed
(a redelivered record can never re-park a delivered write), and the first sweep of a partition
whose rows were loaded from the store (a restart, a hand-over) first drops the rows whose WAL
record a previous owner already sent.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from flows.spec import (
    BatchResult,
    DeadRow,
    FlowContext,
    FlowSpec,
    Output,
    StatePage,
    Sweep,
    SweepContext,
    TableSpec,
    WorkerPage,
)
from processors.backend_policy import HealthMode
from processors.dead_letters import DeadLetterReason, SourceRecord
from processors.intake import Event
from processors.keys import KeyRule
from processors.memory import MemoryLink, MemoryWrite
from processors.outbox import (
    OUTBOX_POLICY_DEFAULT,
    FlushRequests,
    OutboxPolicy,
    RowSummary,
    backlog_by_tenant,
    chunks,
    due_keys,
    failed,
    given_up,
    new_row,
    retry_delay,
    sending_mode,
    summarize,
)
from processors.write_plan import WriteRefused, memory_write_to_write
from processors.write_records import wal_record_of_parked
from soma import metrics
from soma.errors import TransientError
from soma.settings import Settings
from state.memory.errors import BackendRejected, BackendUnavailable
from state.memory.watch import WatchedBackend, watched_backend
from state.recall_cache import GenerationBumper, redis_client

log = logging.getLogger(__name__)

SOURCE, WAL = "memory.outbox", "memory.wal"
ROWS = "outbox"
CLOCK_SKEW_MS = 5_000


@dataclass
class DrainResources:
    """One worker's backend, its manual flushes, and what it delivered (the drain rate)."""

    watched: WatchedBackend
    bumper: GenerationBumper  # recall-cache generations (state/recall_cache.py)
    policy: OutboxPolicy = OUTBOX_POLICY_DEFAULT
    flush: FlushRequests = field(default_factory=FlushRequests)
    last_batch_ms: int | None = None
    delivered: dict[str, int] = field(default_factory=dict)  # tenant -> writes delivered
    mode: HealthMode = HealthMode.NORMAL
    rand: Callable[[], float] = random.random  # per-item backoff jitter


@asynccontextmanager
async def open_drain(settings: Settings) -> AsyncIterator[DrainResources]:
    for outcome in ("delivered", "retried", "dead_lettered"):
        metrics.OUTBOX_DRAINED.labels(outcome)  # 0, not "no data", on a quiet plane
    redis = redis_client(settings)
    try:
        async with watched_backend(settings) as watched:
            bumper = GenerationBumper(redis, timeout_s=settings.recall_cache_timeout_s)
            yield DrainResources(watched, bumper)
    finally:
        await redis.aclose()


def _now_ms() -> int:
    return int(time.time() * 1000)


# --- batches: park each outbox record as a row ------------------------------------------------


def park(events: Sequence[Event], ctx: FlowContext) -> BatchResult:
    """One row per outbox record; a row already there (a redelivery) is kept as it is."""
    rows: dict[str, Any] = {}
    now = _now_ms()
    for event in events:
        key = event.key
        if key in rows or ctx.table(ROWS).get(key) is not None:
            continue
        record = event.record
        source = {
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "timestamp_ms": record.timestamp_ms,
            "key": key,
            "headers": [[name, _b64(value)] for name, value in record.headers],
        }
        rows[key] = new_row(event.value, source, now)
    return BatchResult(writes={ROWS: rows})


# --- the sweep: deliver what is due -----------------------------------------------------------


async def drain(rows: Mapping[str, RowSummary], ctx: SweepContext) -> BatchResult:
    """Deliver the partition's due rows as the backend's health allows."""
    resources: DrainResources = ctx.resources
    now = _now_ms()
    _report(ctx.partition, rows, now)
    mode = sending_mode(resources.watched.health(), resources.policy, resources.last_batch_ms, now)
    resources.mode = mode.name
    if not rows:
        return BatchResult()
    deletes: dict[str, Any] = {}
    if ctx.fresh:
        deletes = await _already_delivered(ctx, rows)
        rows = {k: v for k, v in rows.items() if k not in deletes}
    resources.flush.expire(now)
    keys = due_keys(rows, now_ms=now, committed_offset=ctx.committed_offset, flush=resources.flush)
    flushing = any(resources.flush.covers(rows[k], now) for k in keys)
    batches = mode.batches if not flushing else max(mode.batches, len(keys))
    if batches == 0 or not keys:
        return BatchResult(writes={ROWS: deletes} if deletes else {})
    result = _Delivery(ctx, resources)
    for batch in chunks(keys, resources.policy.batch_max, batches):
        await result.deliver([(key, ctx.table(ROWS).get(key)) for key in batch])
        resources.last_batch_ms = _now_ms()
        if result.unavailable:
            break  # the rest stays due; the next sweep (or the breaker's trial) tries again
    result.writes.update(deletes)
    return BatchResult(writes={ROWS: result.writes}, outputs=result.outputs, dead_rows=result.dead)


@dataclass
class _Delivery:
    ctx: SweepContext
    resources: DrainResources
    writes: dict[str, Any] = field(default_factory=dict)
    outputs: list[Output] = field(default_factory=list)
    dead: list[DeadRow] = field(default_factory=list)
    unavailable: bool = False

    async def deliver(self, batch: list[tuple[str, dict[str, Any]]]) -> None:
        namespace = self.ctx.settings.namespace
        ready: list[tuple[str, dict[str, Any], MemoryWrite]] = []
        for key, row in batch:
            try:
                ready.append((key, row, memory_write_to_write(row["item"]["write"], namespace)))
            except WriteRefused as exc:
                self._give_up(key, row, exc, DeadLetterReason.REJECTED)
        if not ready:
            return
        backend = self.resources.watched.backend
        try:
            results = await backend.remember_batch([write for _, _, write in ready])
        except BackendUnavailable as exc:
            self._failed(ready, str(exc))
            return
        except BackendRejected as exc:
            if exc.index is not None and 0 <= exc.index < len(ready):
                key, row, _ = ready.pop(exc.index)
                self._give_up(key, row, exc, DeadLetterReason.REJECTED)
            elif len(ready) == 1:
                key, row, _ = ready[0]
                self._give_up(key, row, exc, DeadLetterReason.REJECTED)
                return
            for one in ready:  # the culprit is unnamed: one at a time
                await self.deliver([(one[0], one[1])])
            return
        try:
            await _record_links(backend, [row for _, row, _ in ready])
        except BackendUnavailable as exc:
            # The writes are stored (idempotent on their keys); their links are not: the rows
            # stay and the next try sends both again.
            self._failed(ready, f"links: {exc}")
            return
        # Cached recalls of these scopes now lack a stored write: invalidate them before the
        # rows leave (never raises; a failed bump is retried with the next delivery).
        await self.resources.bumper.bump({(w.tenant, w.namespace) for _, _, w in ready})
        acknowledged = datetime.now(UTC)
        for (key, row, write), answer in zip(ready, results, strict=True):
            record = wal_record_of_parked(row["item"], write, answer, row["source"], acknowledged)
            self.outputs.append(Output(WAL, record, tenant=write.tenant))
            self.writes[key] = None
            self.resources.delivered[write.tenant] = (
                self.resources.delivered.get(write.tenant, 0) + 1
            )
        metrics.OUTBOX_DRAINED.labels("delivered").inc(len(ready))

    def _failed(self, ready: list[tuple[str, dict[str, Any], MemoryWrite]], error: str) -> None:
        self.unavailable = True
        now = _now_ms()
        policy = self.resources.policy
        for key, row, _ in ready:
            delay = retry_delay(policy, row["attempts"] + 1, self.resources.rand)
            after = failed(row, error, now, delay)
            reason = given_up(policy, after, now)
            if reason is not None:
                self._give_up(key, after, TransientError(f"{reason}; last error: {error}"),
                              DeadLetterReason.RETRIES_EXHAUSTED)  # fmt: skip
            else:
                self.writes[key] = after
        metrics.OUTBOX_DRAINED.labels("retried").inc(len(ready))

    def _give_up(
        self, key: str, row: dict[str, Any], error: BaseException, reason: DeadLetterReason
    ) -> None:
        self.dead.append(DeadRow(_source_record(row), error, reason, int(row["attempts"])))
        self.writes[key] = None
        metrics.OUTBOX_DRAINED.labels("dead_lettered").inc()


async def _record_links(backend: Any, rows: Sequence[Mapping[str, Any]]) -> None:
    """The links a parked write owed, after the write itself (its end exists now)."""
    for row in rows:
        for link in row["item"].get("links") or ():
            weight = float(link.get("weight", 1.0))
            await backend.link(
                MemoryLink.between(link["from_key"], link["to_key"], link["type"], weight)
            )


async def _already_delivered(ctx: SweepContext, rows: Mapping[str, RowSummary]) -> dict[str, Any]:
    """Rows a previous owner delivered but could not delete: their WAL record exists."""
    from topics.tail import keys_since  # a broker client, loaded when needed

    since = min(summary.updated_ms for summary in rows.values()) - CLOCK_SKEW_MS
    wal = f"{ctx.settings.topic_prefix}{WAL}"
    try:
        sent = await asyncio.to_thread(
            keys_since, ctx.settings, [wal], since, partitions=[ctx.partition]
        )
    except Exception as exc:
        raise TransientError(f"reading {wal} for a hand-over check: {exc}") from exc
    found = {key: None for key in rows if key in sent.get(wal, set())}
    if found:
        log.warning(
            "outbox-drain: %d rows of partition %d were delivered by a previous owner; dropped",
            len(found),
            ctx.partition,
        )
    return found


def _report(partition: int, rows: Mapping[str, RowSummary], now_ms: int) -> None:
    metrics.OUTBOX_PENDING.labels(str(partition)).set(len(rows))
    oldest = min((r.parked_ms for r in rows.values()), default=now_ms)
    metrics.OUTBOX_OLDEST_AGE_SECONDS.labels(str(partition)).set(max(0, now_ms - oldest) / 1000)


def _source_record(row: Mapping[str, Any]) -> SourceRecord:
    import orjson

    source = row["source"]
    return SourceRecord(
        topic=source["topic"],
        partition=int(source["partition"]),
        offset=int(source["offset"]),
        key=str(source["key"]).encode(),
        value=orjson.dumps(row["item"]),
        headers=tuple((name, base64.b64decode(value)) for name, value in source["headers"]),
        timestamp_ms=int(source["timestamp_ms"]),
    )


def _b64(value: bytes | None) -> str:
    return base64.b64encode(value or b"").decode()


# --- worker pages: status and manual flush -----------------------------------------------------


async def summary_page(runtime: Any, params: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
    """This worker's backlog per tenant, from its in-memory row summaries."""
    resources: DrainResources | None = runtime.resources
    sweeper = runtime.sweeper
    owned = sorted(tp.partition for tp in runtime.owned() if tp.topic == sweeper.source)
    loaded = sweeper.all_summaries() if sweeper else {}
    missing = [p for p in owned if p not in loaded]
    rows = [r for p in owned if p in loaded for r in loaded[p].values()]
    tenants = {
        tenant: {
            "pending": b.pending,
            "oldest_parked_ms": b.oldest_parked_ms,
            "next_attempt_ms": b.next_attempt_ms,
            "max_attempts": b.max_attempts,
        }
        for tenant, b in backlog_by_tenant(rows).items()
    }
    body = {
        "partitions": [p for p in owned if p in loaded],
        "loading": missing,
        "tenants": tenants,
        "delivered": dict(resources.delivered) if resources else {},
        "mode": resources.mode.value if resources else "starting",
        "now_ms": _now_ms(),
    }
    return 200, body


async def flush_page(runtime: Any, params: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
    """Make the rows parked so far (of one tenant, or all) due now, and sweep at once."""
    resources: DrainResources | None = runtime.resources
    if resources is None or runtime.sweeper is None:
        return 503, {"error": "starting"}
    tenant = params.get("tenant") or None
    resources.flush.request(tenant, _now_ms())
    runtime.sweeper.wake()
    return 202, {"flushing": tenant or "*"}


def _identity(value: Any) -> Any:
    return value


SPEC = FlowSpec(
    name="outbox-drain",
    app_id="soma-outbox-drain",
    description="writes parked in memory.outbox to the memory backend once it takes them; "
    "delivered writes to memory.wal",
    sources=(SOURCE,),
    handler=park,
    tables=(TableSpec(ROWS, _identity, _identity, None, key_rule=KeyRule.TENANT_IDEMPOTENCY),),
    outputs=(WAL,),
    state_pages=(
        StatePage(
            name="outbox",
            table=ROWS,
            key_rule=KeyRule.TENANT_IDEMPOTENCY,
            summary="a write waiting in the outbox",
            public=False,
            order_by="parked_ms",
        ),
    ),
    resources=open_drain,
    sweep=Sweep(table=ROWS, summarize=summarize, handler=drain, interval_s=1.0),
    pages=(
        WorkerPage("GET", "/outbox/summary", summary_page),
        WorkerPage("POST", "/outbox/flush", flush_page),
    ),
)
