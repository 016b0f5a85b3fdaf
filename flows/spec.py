"""Declaring a flow: what it reads, keeps, writes and shows. Everything else derives from a spec.

A flow module holds a `SPEC = FlowSpec(...)` and a handler that calls pure processors. It must
stay cheap to import (no Faust, no broker client at module level): the gateway's state routes,
the plane's process list, the scrape targets and the docs' flow table all read the specs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from processors.dead_letters import DeadLetterReason, SourceRecord
from processors.intake import Event
from processors.keys import KeyRule
from processors.policies import (
    BATCH_DEFAULT,
    DLQ_LIMIT_DEFAULT,
    RETRY_UNTIL_IT_PASSES,
    BatchPolicy,
    DlqLimit,
    RetryPolicy,
)
from soma.settings import Settings

V = TypeVar("V")


def whole_key(key: str) -> str:
    return key


@dataclass(frozen=True)
class TableSpec(Generic[V]):
    """A changelog-backed table; its keys must be co-partitioned with the flow's sources.

    A key lives on partition murmur2(`partition_key(key)`) of the sources: by default the whole
    key (a table keyed like its source records), or a prefix of it when one source key holds
    many entries (`"tenant/session#entry"` partitioned by `"tenant/session"`).
    """

    name: str
    encode: Callable[[V], Mapping[str, Any]]  # to the JSON object stored and sent to the changelog
    decode: Callable[[Mapping[str, Any]], V]
    default: V  # what `get` answers for a key never written
    key_rule: KeyRule = KeyRule.TENANT_SESSION
    partition_key: Callable[[str], str] = whole_key


@dataclass(frozen=True)
class StatePage:
    """A read of one table key, served by the owning worker and routed by the gateway.

    Worker: `GET /state/<name>/{key}`, and `GET /scan/<name>` (the rows of the partitions it
    owns, filtered, newest first by `order_by`). Gateway, for a public page:
    `GET /v1/state/<name>/{id}` (and each alias), where the key is built from the caller's
    tenant and `id` with `key_rule`, so a tenant can only name its own keys. A page that is not
    public is read by the gateway's own routes (the dead-letter admin API).
    """

    name: str
    table: str
    key_rule: KeyRule
    summary: str
    aliases: tuple[str, ...] = ()
    public: bool = True
    order_by: str | None = None  # the value field a scan sorts on (descending); None: the key


@dataclass(frozen=True)
class Output:
    """An event the flow sends to a registry topic inside its commit order."""

    topic: str  # registry name; the settings' prefix is applied by the kit
    event: Mapping[str, Any]
    cause: Event | None = None  # the source event: its tenant, request id and trace carry over
    tenant: str | None = None  # defaults to the cause's tenant


@dataclass(frozen=True)
class Rejected:
    """A source event the handler refuses for good: it becomes a dead letter."""

    event: Event
    error: BaseException
    reason: DeadLetterReason = DeadLetterReason.REJECTED


@dataclass(frozen=True)
class DeadRow:
    """A table row a sweep gives up on: dead-lettered as the source record that created it."""

    record: SourceRecord  # rebuilt from what the row kept of its source record
    error: BaseException
    reason: DeadLetterReason
    attempts: int


@dataclass(frozen=True)
class BatchResult:
    """What a handler (or a sweep) asks the kit to make durable for one batch."""

    # table -> key -> value; None deletes the key (a tombstone in its changelog)
    writes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    outputs: Sequence[Output] = ()
    rejected: Sequence[Rejected] = ()
    dead_rows: Sequence[DeadRow] = ()  # sweeps only


class TableView(Protocol):
    """A table as the handler sees it: stored values plus this batch's earlier writes."""

    def get(self, key: str) -> Any: ...


class FlowContext(Protocol):
    """What a handler may use besides its events."""

    settings: Settings
    resources: Any  # what `FlowSpec.resources` opened, or None
    partitions: int  # partitions of every source topic (they are co-partitioned)

    def table(self, name: str) -> TableView: ...


@dataclass(frozen=True)
class WorkerInfo:
    """Where the running worker is: its consumer group (which `--app-id` may override) and port."""

    app_id: str
    port: int


# Set by the kit while a worker opens its flow's resources, so a resource that needs the
# worker's own group (e.g. to read its committed offsets) gets it without a new parameter.
current_worker: ContextVar[WorkerInfo] = ContextVar("current_worker")


class SweepContext(FlowContext, Protocol):
    """A sweep's context: the flow's, plus where its partition's source is committed."""

    partition: int
    committed_offset: int  # the source offset the group committed for this partition (or -1)
    fresh: bool  # rows loaded from the store, not swept yet: a previous owner may have acted


Handler = Callable[[Sequence[Event], FlowContext], "BatchResult | Awaitable[BatchResult]"]
# (summaries of the partition's rows by key, context) -> what to make durable
SweepHandler = Callable[[Mapping[str, Any], SweepContext], Awaitable[BatchResult]]


@dataclass(frozen=True)
class Sweep:
    """Periodic work over the rows one table holds on each owned partition: retries, timers.

    The kit keeps, per owned partition, a small in-memory summary of every row of `table`
    (`summarize(value)`), loaded from the local store when the partition is (re)assigned and
    kept current by every write the flow makes. Every `interval_s` (or at once when woken), it
    calls `handler(summaries, ctx)` for each owned partition, never while a batch of the flow
    runs, and makes its result durable in the same commit order as a batch (outputs, then
    table writes); a sweep commits no offsets. `ctx.table(name).get(key)` reads whole rows.
    """

    table: str
    summarize: Callable[[Any], Any]
    handler: SweepHandler
    interval_s: float = 1.0


Resources = Callable[[Settings], AbstractAsyncContextManager[Any]]
# The flow's own health from its open resources: a JSON object whose `status` is ok, degraded
# or down. The worker serves it on GET /health (503 when down or while resources open).
HealthReport = Callable[[Any], Awaitable[Mapping[str, Any]]]


@dataclass(frozen=True)
class WorkerPage:
    """An internal page of each worker of a flow (only the gateway's credential may call it)."""

    method: str  # GET or POST
    path: str  # e.g. /outbox/summary
    # (the worker's FlowRuntime, query parameters) -> (HTTP status, JSON body)
    handler: Callable[[Any, Mapping[str, str]], Awaitable[tuple[int, Mapping[str, Any]]]]


@dataclass(frozen=True)
class FlowSpec:
    """One always-on flow, declared once.

    Handlers must be idempotent in effect: the kit re-runs them after a transient failure, to
    isolate a poison record, and after a crash (at-least-once delivery); table writes and
    outputs are only made durable once a run succeeded.
    """

    name: str  # `soma flow run NAME`, metric label, process name `flow-NAME`
    app_id: str  # consumer group and changelog prefix (the settings' topic prefix is prepended)
    sources: tuple[str, ...]  # registry topic names; each has its own `<source>.dlq`
    handler: Handler
    description: str
    tables: tuple[TableSpec[Any], ...] = ()
    outputs: tuple[str, ...] = ()  # registry topics the handler may send to
    state_pages: tuple[StatePage, ...] = ()
    resources: Resources | None = None  # opened once per worker, passed as `ctx.resources`
    health: HealthReport | None = None  # GET /health on each worker, from `resources`
    batch: BatchPolicy = BATCH_DEFAULT
    retry: RetryPolicy = RETRY_UNTIL_IT_PASSES
    dlq_limit: DlqLimit = DLQ_LIMIT_DEFAULT
    workers: int = 1  # processes `make up` runs in the group
    sweep: Sweep | None = None  # periodic work over a table's rows (flows/kit/sweeps.py)
    # Extra worker pages: (method, path, handler(runtime, request params) -> (status, JSON)),
    # served behind the gateway's internal credential like the state pages.
    pages: tuple[WorkerPage, ...] = ()

    def __post_init__(self) -> None:
        if not self.sources:
            raise ValueError(f"flow {self.name!r} reads no source topic")
        tables = {t.name for t in self.tables}
        for page in self.state_pages:
            if page.table not in tables:
                raise ValueError(f"flow {self.name!r}: page {page.name!r} reads unknown table")
        if self.sweep is not None and self.sweep.table not in tables:
            raise ValueError(f"flow {self.name!r}: its sweep reads unknown table")

    def table(self, name: str) -> TableSpec[Any]:
        for table in self.tables:
            if table.name == name:
                return table
        raise KeyError(f"flow {self.name!r} has no table {name!r}")
