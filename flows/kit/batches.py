"""One batch through a flow: ownership, intake, the handler under the retry policy, dead letters.

The handler runs on the admitted events. A transient failure (`soma.errors.TransientError`)
re-runs it after a jittered backoff, in place, for as long as the retry policy allows. Any
other exception is the record's fault, but the batch does not say which record: the batch
is split in halves and each half re-run, until the failing records stand alone and are
dead-lettered (`reason=processing`). Table writes of a run are only kept when the run
succeeds, so re-runs see exactly the state the earlier parts of the batch left.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from faust.types import TP, EventT

from flows.errors import NotCoPartitioned
from flows.kit.commit import TableWrites, commit_batch
from flows.kit.dead_letters import DeadLetter, dead_letter_record
from flows.kit.faust_internals import DurableTable, acting_for, disown
from flows.kit.telemetry import observe_latency
from flows.spec import BatchResult, FlowSpec, Output, Rejected
from processors.dead_letters import DeadLetterReason, SourceRecord
from processors.errors import PoisonRecord
from processors.intake import Event, admit
from processors.partitioning import partition_for
from processors.policies import DlqLimitState
from schemas import validator
from soma import metrics
from soma.errors import TransientError
from soma.settings import Settings
from topics.producer import EventProducer
from topics.records import OutgoingRecord, RecordContext, build_record
from topics.registry import TopicRegistry, TopicSpec

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[Any]]


async def _no_commit(offsets: dict[TP, int]) -> bool:
    return True


async def _no_seek(tp: TP, offset: int) -> None:
    return None


async def _no_earliest(tp: TP) -> int:
    return 0


def _disown_all(events: Sequence[EventT]) -> None:
    for event in events:
        disown(event)


class BatchAbandoned(Exception):  # a control-flow signal, not a failure (not a SomaError)
    """The batch is given up before anything of it became durable (Faust's `Skip` kind)."""


StoredValue = Callable[[str], "bytes | None"]  # a table key's stored bytes, read as its partition


class RowsWritten(Protocol):
    """Told about every row a flow made durable (the sweep's in-memory summaries)."""

    def row_written(self, table: str, partition: int, key: str, value: Any) -> None: ...


class TableOverlay:
    """A table as one batch sees it: stored values under the writes of the batch so far."""

    def __init__(
        self, stored: StoredValue, spec_decode: Callable[[Mapping[str, Any]], Any], default: Any
    ) -> None:
        self._stored, self._decode, self._default = stored, spec_decode, default
        self.writes: dict[str, Any] = {}

    def get(self, key: str) -> Any:
        if key in self.writes:
            written = self.writes[key]
            return self._default if written is None else written  # None: deleted
        raw = self._stored(key)
        return self._default if raw is None else self._decode(orjson.loads(raw))


@dataclass
class _Context:
    settings: Settings
    resources: Any
    partitions: int
    views: dict[str, _PendingView]

    def table(self, name: str) -> _PendingView:
        return self.views[name]


class _PendingView:
    """An overlay plus the writes of the run in progress (kept only if the run succeeds)."""

    def __init__(self, base: TableOverlay) -> None:
        self.base = base
        self.pending: dict[str, Any] = {}

    def get(self, key: str) -> Any:
        if key in self.pending:
            written = self.pending[key]
            return self.base._default if written is None else written  # None: deleted
        return self.base.get(key)


@dataclass
class _Outcome:
    outputs: list[Output] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)


@dataclass
class FlowRuntime:
    """A flow as one worker runs it: its spec, tables, topics and the policies' live state."""

    spec: FlowSpec
    settings: Settings
    app_id: str
    partitions: int
    tables: dict[str, DurableTable]
    owned: Callable[[], set[TP]]
    rebalancing: Callable[[], bool]
    stale: Callable[[EventT], bool]  # fetched before the last rebalance (faust_internals)
    halt: Callable[[str], None]
    generation: Callable[[], int] = lambda: -1  # the consumer group generation
    # Where each stream partition resumed in a generation (faust_internals.start_positions).
    start_positions: Callable[[], tuple[int, dict[TP, int]]] = lambda: (-1, {})
    commit_offsets: Callable[[dict[TP, int]], Awaitable[bool]] = _no_commit
    seek: Callable[[TP, int], Awaitable[None]] = _no_seek
    earliest_offset: Callable[[TP], Awaitable[int]] = _no_earliest
    registry: TopicRegistry = field(init=False)
    sources: dict[str, TopicSpec] = field(init=False)
    producer: EventProducer | None = None
    resources: Any = None
    sleep: Sleep = asyncio.sleep
    rand: Callable[[], float] = random.random

    def __post_init__(self) -> None:
        self.registry = TopicRegistry(self.settings.topic_prefix)
        self.sources = {self.registry.get(s).name: self.registry.get(s) for s in self.spec.sources}
        self.limit = DlqLimitState(self.spec.dlq_limit)
        self._checks = {name: validator(spec.schema) for name, spec in self.sources.items()}
        self._compacted = {n for n, t in self.sources.items() if "compact" in t.cleanup_policy}
        self._positions: dict[TP, int] = {}  # next offset to process, per stream partition
        self._positions_generation = -2
        self._seeking: dict[TP, int] = {}  # partitions sought back to a missing offset
        self._committed: dict[TP, int] = {}  # the group's committed offset, per stream partition
        # Batches and sweeps take turns: a sweep never sees a batch's writes half made.
        self.lock = asyncio.Lock()
        self.sweeper: RowsWritten | None = None  # told about every row the flow writes
        # Label lookups cost more than the increment: bind each source's counter once.
        self._events_in = {
            name: metrics.FLOW_EVENTS_IN.labels(self.spec.name, name) for name in self.sources
        }

    # --- one batch ---------------------------------------------------------------------------

    async def process(self, events: Sequence[EventT]) -> None:
        """Run one batch through the commit order (flows/kit/commit.py)."""
        async with self.lock:
            await self._process(events)

    async def _process(self, events: Sequence[EventT]) -> None:
        started = time.perf_counter()
        flow = self.spec.name
        generation = self.generation()
        before = dict(self._positions)
        live = await self._in_order(events)
        admitted: list[Event] = []
        outcome = _Outcome()
        for event in live:
            record = source_record(event)
            self._events_in[record.topic].inc()
            try:
                admitted.append(self._admit(record))
            except PoisonRecord as poison:
                outcome.dead.append(DeadLetter(record, poison.reason, poison))
        by_partition = {event.message.partition: event for event in live}
        overlays = {
            t.name: TableOverlay(self._reader(t.name, by_partition), t.decode, t.default)
            for t in self.spec.tables
        }
        try:
            await self._run(admitted, overlays, outcome, attempts=0)
        except BatchAbandoned as why:
            # Nothing of the batch is made durable or committed: every event is delivered
            # again from the committed offset once the rebalance is over.
            log.warning("%s: batch of %d abandoned: %s", flow, len(live), why)
            self._positions = before
            _disown_all(events)
            return
        self._judge_limit(live, outcome)
        await self._commit(live, overlays, outcome)
        await self._commit_offsets(live, generation)
        _disown_all(events)  # Faust commits nothing; the kit committed what it processed
        metrics.FLOW_BATCH_SIZE.labels(flow).observe(len(events))
        metrics.FLOW_BATCH_SECONDS.labels(flow).observe(time.perf_counter() - started)

    async def _in_order(self, events: Sequence[EventT]) -> list[EventT]:
        """The events to process: of partitions this worker owns, in offset order from where
        each partition resumed, none twice and none past a record that did not arrive.

        A record missing between the last one processed and the next one delivered is either
        gone from the log (compacted, or expired by retention: the next one is processed) or
        was not delivered (the partition is sought back to it, and what arrives until it does
        is left for redelivery). Faust's own bookkeeping counts such a jump as processed.
        """
        self.sync_generation()
        owned = self.owned()
        live: list[EventT] = []
        left: dict[str, list[str]] = {}
        for event in events:
            message = event.message
            tp, offset = message.tp, message.offset
            why = None
            if tp not in owned:
                why = "not owned"  # revoked while buffered: its new owner reads it
            elif self.stale(event):
                why = "stale"  # buffered across a rebalance: read again from the commit
            else:
                position = self._positions.get(tp)
                if position is not None and offset < position:
                    why = "done"  # delivered again (after a seek): processed already
                elif (
                    position is not None
                    and offset > position
                    and not await self._missing_is_gone(tp, position, offset)
                ):
                    why = "gap"
            if why is None:
                live.append(event)
                self._positions[tp] = offset + 1
                self._seeking.pop(tp, None)
            else:
                left.setdefault(why, []).append(f"{message.partition}@{offset}")
        if left:
            log.info("%s: left for redelivery: %s", self.spec.name, left)
        return live

    def sync_generation(self) -> None:
        """Start tracking positions afresh when a rebalance completed since the last look."""
        generation, starts = self.start_positions()
        if generation != self._positions_generation:
            self._positions, self._positions_generation = dict(starts), generation
            self._committed = dict(starts)  # where a partition resumed is what was committed
            self._seeking.clear()

    def committed_offset(self, tp: TP) -> int:
        """The offset the group committed for `tp` in this generation, -1 when unknown."""
        return self._committed.get(tp, -1)

    async def _missing_is_gone(self, tp: TP, position: int, offset: int) -> bool:
        if tp.topic in self._compacted:
            return True  # compaction removes offsets: the gap is the log's, not ours
        earliest = await self.earliest_offset(tp)
        if offset <= earliest:
            log.warning(
                "%s: %s[%d]@%d..%d expired before it was read",
                self.spec.name,
                tp.topic,
                tp.partition,
                position,
                earliest - 1,
            )
            return True
        if self._seeking.get(tp) != position:
            log.warning(
                "%s: %s[%d] delivered @%d before @%d; reading it again from @%d",
                self.spec.name,
                tp.topic,
                tp.partition,
                offset,
                position,
                position,
            )
            self._seeking[tp] = position
            await self.seek(tp, position)
        return False

    async def _commit_offsets(self, live: Sequence[EventT], generation: int) -> None:
        """Commit order step 4: the next offset to process of every partition the batch
        advanced, while this worker still owns it in the same generation."""
        if generation != self.generation():
            return  # a rebalance happened meanwhile: the new assignment starts from commits
        owned = self.owned()
        touched = {event.message.tp for event in live}
        offsets = {tp: self._positions[tp] for tp in touched if tp in owned}
        if offsets and await self.commit_offsets(offsets):
            self._committed.update(offsets)

    def _reader(self, table: str, by_partition: Mapping[int, EventT]) -> StoredValue:
        """Reads of `table` for one batch, each made as an event of the key's partition.

        Faust's RocksDB store reads the partition database of the *current event* when there
        is one (tables have `use_partitioner=False`), and the batch body runs in a task whose
        current event may be any earlier one: a read without the right event can miss a key
        that exists and answer "never written" (seen here: counts restarting from zero).
        """
        store = self.tables[table]

        def stored(key: str) -> bytes | None:
            event = by_partition.get(self.partition_of(table, key))
            if event is None:
                raise NotCoPartitioned(
                    f"{self.spec.name} read {table}[{key!r}], which is not co-partitioned with "
                    "the events of the batch"
                )
            with acting_for(event):
                raw: bytes | None = store.get(key.encode())
            return raw

        return stored

    def partition_of(self, table: str, key: str) -> int:
        """The source partition (and so changelog partition) a table key lives on."""
        partition_key = self.spec.table(table).partition_key(key)
        return partition_for(partition_key.encode(), self.partitions)

    def _admit(self, record: SourceRecord) -> Event:
        return admit(
            record,
            check_schema=self._checks[record.topic],
            partitions=self.partitions,
            max_bytes=self.spec.batch.max_record_bytes,
        )

    # --- the handler under the retry policy ----------------------------------------------------

    async def _run(
        self,
        events: list[Event],
        overlays: dict[str, TableOverlay],
        outcome: _Outcome,
        attempts: int,
    ) -> None:
        retry = self.spec.retry
        while events:
            owned = self.owned()
            events = [e for e in events if TP(e.topic, e.partition) in owned]
            if not events:
                return  # _commit disowns what this worker no longer owns
            if attempts and self.rebalancing():
                # Retrying through a rebalance would hold it up (Faust waits for in-flight
                # events); the batch is given up instead and redelivered after it.
                raise BatchAbandoned("a rebalance began while a transient failure was retried")
            attempts += 1
            views = {name: _PendingView(overlay) for name, overlay in overlays.items()}
            try:
                result = await self._call(events, views)
            except TransientError as exc:
                if retry.exhausted(attempts):
                    outcome.dead.extend(
                        DeadLetter(e.record, DeadLetterReason.RETRIES_EXHAUSTED, exc, attempts)
                        for e in events
                    )
                    return
                metrics.FLOW_RETRIES.labels(self.spec.name, type(exc).__name__).inc()
                delay = retry.backoff.delay(attempts, self.rand)
                if exc.retry_after_s:
                    delay = max(delay, min(exc.retry_after_s, retry.backoff.cap_s))
                log.warning(
                    "%s: transient failure (%s); retry %d in %.2fs",
                    self.spec.name,
                    exc,
                    attempts,
                    delay,
                )
                await self.sleep(delay)
                continue
            except Exception as exc:
                if len(events) == 1:
                    log.warning("%s: dead-lettering %s: %r", self.spec.name, _where(events[0]), exc)
                    outcome.dead.append(
                        DeadLetter(events[0].record, DeadLetterReason.PROCESSING, exc, attempts)
                    )
                    return
                half = len(events) // 2  # halves in order: a key's events keep their order
                await self._run(events[:half], overlays, outcome, attempts)
                await self._run(events[half:], overlays, outcome, attempts)
                return
            self._keep(result, overlays, outcome)
            return

    async def _call(self, events: list[Event], views: dict[str, _PendingView]) -> BatchResult:
        ctx = _Context(self.settings, self.resources, self.partitions, views)
        result = self.spec.handler(events, ctx)
        if inspect.isawaitable(result):
            result = await result
        if not isinstance(result, BatchResult):
            raise TypeError(f"{self.spec.name} handler returned {type(result).__name__}")
        partitions = {e.partition for e in events}
        for name, writes in result.writes.items():
            if name not in views:
                raise KeyError(f"{self.spec.name} wrote to undeclared table {name!r}")
            for key in writes:
                if self.partition_of(name, key) not in partitions:
                    # The table's changelog partition must be the source partition of the
                    # events that changed it; anything else would split a key's state.
                    raise NotCoPartitioned(
                        f"{self.spec.name} wrote {name}[{key!r}], which is not co-partitioned "
                        "with the events of the batch"
                    )
        return result

    def _keep(
        self, result: BatchResult, overlays: dict[str, TableOverlay], outcome: _Outcome
    ) -> None:
        for name, writes in result.writes.items():
            overlays[name].writes.update(writes)
        outcome.outputs.extend(result.outputs)
        outcome.dead.extend(_rejected(r) for r in result.rejected)

    # --- limit and commit ----------------------------------------------------------------------

    def _judge_limit(self, live: Sequence[EventT], outcome: _Outcome) -> None:
        dead = {(d.record.topic, d.record.partition, d.record.offset) for d in outcome.dead}
        for event in live:
            message = event.message
            self.limit.record((message.topic, message.partition, message.offset) in dead)
            reason = self.limit.exceeded()
            if reason is not None:
                metrics.FLOW_HALTED.labels(self.spec.name).set(1)
                self.halt(reason)

    async def _commit(
        self, live: Sequence[EventT], overlays: dict[str, TableOverlay], outcome: _Outcome
    ) -> None:
        owned = self.owned()
        kept = [e for e in live if e.message.tp in owned]
        for event in live:
            if event.message.tp not in owned:
                disown(event)  # lost during the batch: drop its writes and outputs below
        by_partition = {e.message.partition: e for e in kept}
        records = [
            self.dead_letter_record(d) for d in outcome.dead if d.record.partition in by_partition
        ]
        outputs = [
            o for o in outcome.outputs if o.cause is None or o.cause.partition in by_partition
        ]
        records.extend(self.output_record(o) for o in outputs)
        # Keys of partitions lost during the batch are dropped: the new owner replays.
        await self.make_durable(
            records,
            {name: overlay.writes for name, overlay in overlays.items()},
            by_partition,
            outcome.dead,
            outputs,
        )
        observe_latency(self.spec.name, "processed", (e.message.timestamp for e in kept))

    async def make_durable(
        self,
        records: list[OutgoingRecord],
        table_writes: Mapping[str, Mapping[str, Any]],
        by_partition: Mapping[int, EventT],
        dead: Sequence[DeadLetter],
        outputs: Sequence[Output],
    ) -> None:
        """Commit order steps 2 and 3 for outputs and dead letters already built, and the
        table writes of the partitions in `by_partition` (each written as that event)."""
        writes: list[tuple[DurableTable, TableWrites]] = []
        written: list[tuple[str, int, str, Any]] = []
        for name, changed in table_writes.items():
            encode = self.spec.table(name).encode
            rows = []
            for key, value in changed.items():
                partition = self.partition_of(name, key)
                if partition not in by_partition:
                    continue
                raw = None if value is None else orjson.dumps(encode(value))
                rows.append((key.encode(), raw, by_partition[partition]))
                written.append((name, partition, key, value))
            writes.append((self.tables[name], rows))
            metrics.FLOW_TABLE_WRITES.labels(self.spec.name, name).inc(len(rows))
        if self.producer is None:
            raise RuntimeError("the flow's producer is not open")
        await commit_batch(self.producer, records, writes, on_retry=self._count_retry)
        if self.sweeper is not None:
            for name, partition, key, value in written:
                self.sweeper.row_written(name, partition, key, value)
        for letter in dead:
            metrics.FLOW_DEAD_LETTERS.labels(
                self.spec.name, letter.record.topic, letter.reason.value
            ).inc()
        for output in outputs:
            metrics.FLOW_EVENTS_OUT.labels(self.spec.name, output.topic).inc()

    def _count_retry(self, error: BaseException) -> None:
        metrics.FLOW_RETRIES.labels(self.spec.name, type(error).__name__).inc()

    def dead_letter_record(self, dead: DeadLetter) -> OutgoingRecord:
        source = self.sources[dead.record.topic]
        assert source.dlq is not None, f"{source.name} has no dead-letter topic"
        dlq = self.registry.get(source.dlq.removeprefix(self.settings.topic_prefix))
        return dead_letter_record(dead, dlq, flow=self.spec.name, consumer_group=self.app_id)

    def output_record(self, output: Output) -> OutgoingRecord:
        if output.topic not in self.spec.outputs:
            raise ValueError(f"{self.spec.name} does not declare output topic {output.topic!r}")
        cause = output.cause
        tenant = output.tenant or (cause.tenant if cause else None)
        if tenant is None:
            raise ValueError(f"{self.spec.name}: an output to {output.topic} names no tenant")
        ctx = RecordContext(
            tenant=tenant,
            request_id=_header_text(cause.record, "request_id") if cause else None,
            traceparent=_header_text(cause.record, "traceparent") if cause else None,
        )
        return build_record(self.registry.get(output.topic), output.event, ctx)


def source_record(event: EventT) -> SourceRecord:
    """The consumed record of a Faust event, bytes untouched."""
    message = event.message
    headers = message.headers or []
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    timestamp = message.timestamp or 0.0
    return SourceRecord(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value,
        headers=tuple((str(name), value) for name, value in pairs),
        timestamp_ms=int(timestamp * 1000),
    )


def _rejected(rejected: Rejected) -> DeadLetter:
    return DeadLetter(rejected.event.record, rejected.reason, rejected.error)


def _header_text(record: SourceRecord, name: str) -> str | None:
    raw = record.header(name)
    return raw.decode("latin-1") if raw else None


def _where(event: Event) -> str:
    return f"{event.topic}[{event.partition}]@{event.offset}"
