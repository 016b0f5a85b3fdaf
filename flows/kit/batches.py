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
from typing import Any

import orjson
from faust.types import TP, EventT

from flows.errors import NotCoPartitioned
from flows.kit.commit import TableWrites, commit_batch
from flows.kit.dead_letters import DeadLetter, dead_letter_record
from flows.kit.faust_internals import DurableTable, disown
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


class TableOverlay:
    """A table as one batch sees it: stored values under the writes of the batch so far."""

    def __init__(
        self, table: DurableTable, spec_decode: Callable[[Mapping[str, Any]], Any], default: Any
    ) -> None:
        self._table, self._decode, self._default = table, spec_decode, default
        self.writes: dict[str, Any] = {}

    def get(self, key: str) -> Any:
        if key in self.writes:
            return self.writes[key]
        raw = self._table.get(key.encode())
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
        return self.pending[key] if key in self.pending else self.base.get(key)


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
    halt: Callable[[str], None]
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

    # --- one batch ---------------------------------------------------------------------------

    async def process(self, events: Sequence[EventT]) -> None:
        """Run one batch through the commit order (flows/kit/commit.py)."""
        started = time.perf_counter()
        flow = self.spec.name
        owned = self.owned()
        live: list[EventT] = []
        for event in events:
            if event.message.tp in owned:
                live.append(event)
            else:
                disown(event)  # revoked while buffered: its new owner replays it
        admitted: list[tuple[Event, EventT]] = []
        outcome = _Outcome()
        for event in live:
            record = source_record(event)
            metrics.FLOW_EVENTS_IN.labels(flow, record.topic).inc()
            try:
                admitted.append((self._admit(record), event))
            except PoisonRecord as poison:
                outcome.dead.append(DeadLetter(record, poison.reason, poison))
        overlays = {
            t.name: TableOverlay(self.tables[t.name], t.decode, t.default) for t in self.spec.tables
        }
        await self._run([e for e, _ in admitted], overlays, outcome, attempts=0)
        self._judge_limit(live, outcome)
        await self._commit(live, overlays, outcome)
        metrics.FLOW_BATCH_SIZE.labels(flow).observe(len(events))
        metrics.FLOW_BATCH_SECONDS.labels(flow).observe(time.perf_counter() - started)

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
            if not events or self.rebalancing():
                return  # _commit disowns what this worker no longer owns
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
                if partition_for(key.encode(), self.partitions) not in partitions:
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
            self._dead_letter_record(d) for d in outcome.dead if d.record.partition in by_partition
        ]
        outputs = [
            o for o in outcome.outputs if o.cause is None or o.cause.partition in by_partition
        ]
        records.extend(self._output_record(o) for o in outputs)
        writes: list[tuple[DurableTable, TableWrites]] = []
        for name, overlay in overlays.items():
            encode = self.spec.table(name).encode
            rows = [
                (key.encode(), orjson.dumps(encode(value)), by_partition[partition])
                for key, value in overlay.writes.items()
                # Keys of partitions lost during the batch are dropped: the new owner replays.
                if (partition := partition_for(key.encode(), self.partitions)) in by_partition
            ]
            writes.append((self.tables[name], rows))
            metrics.FLOW_TABLE_WRITES.labels(self.spec.name, name).inc(len(rows))
        if self.producer is None:
            raise RuntimeError("the flow's producer is not open")
        await commit_batch(self.producer, records, writes, on_retry=self._count_retry)
        for dead in outcome.dead:
            metrics.FLOW_DEAD_LETTERS.labels(
                self.spec.name, dead.record.topic, dead.reason.value
            ).inc()
        for output in outputs:
            metrics.FLOW_EVENTS_OUT.labels(self.spec.name, output.topic).inc()

    def _count_retry(self, error: BaseException) -> None:
        metrics.FLOW_RETRIES.labels(self.spec.name, type(error).__name__).inc()

    def _dead_letter_record(self, dead: DeadLetter) -> OutgoingRecord:
        source = self.sources[dead.record.topic]
        assert source.dlq is not None, f"{source.name} has no dead-letter topic"
        dlq = self.registry.get(source.dlq.removeprefix(self.settings.topic_prefix))
        return dead_letter_record(dead, dlq, flow=self.spec.name, consumer_group=self.app_id)

    def _output_record(self, output: Output) -> OutgoingRecord:
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
