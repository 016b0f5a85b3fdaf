"""Every use of a private faust-streaming API, in one place, pinned to one version.

The project depends on faust-streaming == FAUST_VERSION (pyproject.toml pins it). What this module
overrides, copies or relies on is listed in UPSTREAM, and tests/unit/test_faust_internals.py
fingerprints those upstream functions: an upgrade that changes one fails that test loudly, and
whoever upgrades re-reads the upstream code, adapts this module and updates the fingerprints.

What is here and why:

- `DurableTable`: a table whose changelog sends a batch can await (commit-order step 2). It
  overrides only `send_changelog` to keep each send's future, so upstream `on_key_set` and
  `on_key_del` (and their TTL bookkeeping for windowed tables) run unchanged.
- `acting_for`: sets Faust's current-event context variable, because `take_events` fills its
  buffer in a background task, and both the changelog partition of a write
  (`partition_for_key`, tables have `use_partitioner=False`) and the RocksDB partition database
  are taken from the current event.
- `disown`: marks an event's message acked without telling the consumer, so the `finally` of
  `take_events` (which acks every event of a batch) does not ack it. The kit disowns every
  event: Faust never commits an offset, the kit commits what it processed (`commit_offsets`).
  Faust's own commits follow its acked lists and treat a jump in a partition's offsets as a
  gap of records to consider acked; in rebalance tests here that committed over ~900 records
  no worker had processed (after a hand-over the fetch position had moved past them).
- `start_positions`, `commit_offsets`, `earliest_offset`, `seek`: the kit's own offset
  tracking. Recovery records where each stream partition resumes in a generation; the kit
  processes a partition's records only in offset order from there, seeks back when records
  are missing that the log still holds, and commits the next offset it has not processed.
- `partition_event`, `partition_rows`: what a sweep (flows/kit/sweeps.py) needs to work on one
  partition's rows with no source event at hand: a stand-in current event naming the
  partition (the store and the changelog read only `message.partition` and `message.topic`
  of it), and the rows of that partition's RocksDB database.
- `SeekFirstRecovery` / `SomaTableManager`: recovery that seeks stream partitions to their
  committed offsets before resuming them, and rewinds never-committed partitions to their
  earliest offset. Stock 0.15.3 resumes first and seeks after, so records fetched in between
  look like a gap that Faust then treats as acked, and a partition without a commit resumes
  at its high watermark after a hand-over (records skipped for good). Seen here, see git log.
- `stream_buffer`, `watch_stream_buffer`: the queue behind the agent's stream, and its depth
  after every put, so its high-water mark is exact
  (soma_queue_high_water{queue="flow_stream_buffer"}). Faust's conductor fills it through
  `put_nowait_enhanced` (which calls `force_put_nowait`) and, once it is full, waits in
  `Channel.put` (asyncio's `put`, which calls `put_nowait`).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast

import faust
from aiokafka import TopicPartition as AIOKafkaTP
from aiokafka.structs import OffsetAndMetadata
from faust import streams as faust_streams
from faust.tables.manager import TableManager
from faust.tables.recovery import Recovery
from faust.types import TP, EventT
from faust.types.tuples import FutureMessage

log = logging.getLogger(__name__)

FAUST_VERSION = "0.15.3"

# Upstream functions this module overrides, copies or depends on the behaviour of.
UPSTREAM: tuple[str, ...] = (
    "faust.tables.base:Collection.send_changelog",  # overridden (wrapped) by DurableTable
    "faust.tables.table:Table.on_key_set",  # must call send_changelog (we rely on it)
    "faust.tables.table:Table.on_key_del",  # must call send_changelog (we rely on it)
    "faust.tables.base:Collection.partition_for_key",  # the current event's partition
    "faust.tables.recovery:Recovery.on_recovery_completed",  # copied into SeekFirstRecovery
    "faust.tables.manager:TableManager.recovery",  # overridden by SomaTableManager
    "faust.streams:Stream.take_events",  # acks every event of a batch in `finally` (disown)
    "faust.types.tuples:Message.ack",  # a message already marked acked is skipped (disown)
    "faust.transport.consumer:Consumer.ack",  # adds to _acked only when not yet acked
    "faust.transport.consumer:Consumer.perform_seek",  # fills _committed_offset (start positions)
    "faust.transport.drivers.aiokafka:AIOKafkaConsumerThread.call_thread",  # commit_offsets
    "faust.transport.drivers.aiokafka:AIOKafkaConsumerThread._commit",  # commit_offsets mirrors it
    "faust.stores.rocksdb:Store._set",  # a write goes to the current event's partition DB
    "faust.stores.rocksdb:Store._db_for_partition",  # partition_rows
    "faust.stores.rocksdb:Store._visible_items",  # partition_rows
    "faust.channels:Channel.put",  # a full stream buffer is waited on here (watch_stream_buffer)
    "mode.utils.queues:FlowControlQueue.put_nowait_enhanced",  # calls force_put_nowait
    "mode.utils.queues:FlowControlQueue.force_put_nowait",  # the conductor's put when not full
)


class DurableTable(faust.Table):
    """A Faust table whose changelog sends a batch can await before its events are acked."""

    _unconfirmed: list[FutureMessage]

    def send_changelog(self, *args: Any, **kwargs: Any) -> FutureMessage:
        fut = super().send_changelog(*args, **kwargs)
        self._pending_sends().append(fut)
        return fut

    def _pending_sends(self) -> list[FutureMessage]:
        try:
            return self._unconfirmed
        except AttributeError:
            self._unconfirmed = []
            return self._unconfirmed

    async def changelog_durable(self) -> int:
        """Wait until the broker acknowledged every changelog record sent so far."""
        pending, self._unconfirmed = self._pending_sends(), []
        if pending:
            await asyncio.gather(*pending)
        return len(pending)


@contextmanager
def acting_for(event: EventT) -> Iterator[None]:
    """Make `event` the current event while a key is written outside the stream's own task."""
    token = faust_streams._current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        faust_streams._current_event.reset(token)


class _PartitionMessage:
    __slots__ = ("__weakref__", "partition", "topic")

    def __init__(self, topic: str, partition: int) -> None:
        self.topic, self.partition = topic, partition


class _PartitionEvent:
    """Stands in for a source event of `partition` while a sweep writes its table rows."""

    __slots__ = ("__weakref__", "message")

    def __init__(self, topic: str, partition: int) -> None:
        self.message = _PartitionMessage(topic, partition)


def partition_event(topic: str, partition: int) -> EventT:
    """An event-like object of `topic[partition]`, for `acting_for` outside any batch."""
    return cast(EventT, _PartitionEvent(topic, partition))


def partition_rows(table: DurableTable, partition: int) -> Iterator[tuple[bytes, bytes]]:
    """Every (key, value) the local store holds for `partition` of `table`."""
    store = cast(Any, table.data)
    database = store._db_for_partition(partition)
    yield from store._visible_items(database)


def disown(event: EventT) -> None:
    """Keep `event` from being acked (and so committed) by this worker: it lost the partition."""
    event.message.acked = True


def fetched_before_rebalance(app: faust.App, event: EventT) -> bool:
    """True for an event fetched in an earlier consumer generation.

    Faust drops such messages as they enter a stream, but `take_events` may already hold some
    in its buffer when a rebalance happens. If the worker keeps the partition, recovery seeks it
    back to the committed offset and those records come again, in order: processing the stale
    copies first would fold a key's later records before its earlier ones.
    """
    return bool(event.message.generation_id != app.consumer_generation_id)


# app -> (consumer generation, stream partition -> first offset of that generation)
START_POSITIONS: weakref.WeakKeyDictionary[faust.App, tuple[int, dict[TP, int]]] = (
    weakref.WeakKeyDictionary()
)


def start_positions(app: faust.App) -> tuple[int, dict[TP, int]]:
    """The generation of the last completed recovery and where its stream partitions resumed."""
    return START_POSITIONS.get(app, (-1, {}))


async def commit_offsets(app: faust.App, offsets: dict[TP, int]) -> bool:
    """Commit `offsets` (the next offset to read) for partitions still assigned; False on any
    failure, which only means the records are delivered again after a restart.

    Faust's own commit crashes its consumer service on an unexpected error; this one logs.
    """
    thread = cast(Any, app.consumer)._thread
    consumer = thread._ensure_consumer()
    assigned = thread.assignment()
    committable = {
        AIOKafkaTP(tp.topic, tp.partition): OffsetAndMetadata(offset, "")
        for tp, offset in offsets.items()
        if tp in assigned
    }
    if not committable:
        return True

    async def commit() -> None:
        await consumer.commit(committable)

    try:
        await thread.call_thread(commit)
    except Exception as exc:  # a rebalance, an outage: the next batch's commit covers it
        log.warning("offset commit failed (%r); the records are redelivered if not retried", exc)
        return False
    # Faust's livelock detector reads this to tell a stuck partition from a committing one.
    now = time.monotonic()
    thread.tp_last_committed_at.update({tp: now for tp in offsets if tp in assigned})
    return True


async def earliest_offset(app: faust.App, tp: TP) -> int:
    """The first offset still in the log of `tp` (older ones expired or were compacted)."""
    found = await app.consumer.earliest_offsets(tp)
    return int(found.get(tp, 0))


async def seek(app: faust.App, tp: TP, offset: int) -> None:
    """Fetch `tp` again from `offset`."""
    # On the consumer's own thread and awaited: a seek made from this thread can race the
    # fetcher and leave its fetch waiting forever (see `_rewind_uncommitted`).
    await app.consumer.seek_wait({tp: offset})


def assigned_actives(app: faust.App) -> set[TP]:
    """The source partitions this worker actively owns right now."""
    return set(app.assignor.assigned_actives())


def worker_ready(app: faust.App) -> bool:
    """True once the worker holds an assignment and its tables are recovered."""
    recovery = cast(TableManager, app.tables).recovery
    return not app.rebalancing and not app.in_recovery and recovery.completed.is_set()


class SeekFirstRecovery(Recovery):
    """Recovery that seeks stream partitions to their commits before resuming them."""

    async def on_recovery_completed(self, generation_id: int = 0) -> None:
        # faust 0.15.3's method, with resume_partitions moved after perform_seek and
        # never-committed partitions rewound (see the module docstring).
        consumer = self.app.consumer
        self.log.info("Restore complete!")
        await self.app.on_rebalance_complete.send()
        self._set_recovery_ended()
        callback_coros = [
            asyncio.ensure_future(
                table.on_recovery_completed(
                    self.actives_for_table[table], self.standbys_for_table[table]
                )
            )
            for table in self.tables.values()
        ]
        if callback_coros:
            await asyncio.wait(callback_coros)
        assignment = consumer.assignment()
        if self.app.consumer_generation_id != generation_id:
            self.log.warning(
                "Recovery rebalancing again app id %s param %s",
                self.app.consumer_generation_id,
                generation_id,
            )
            return
        if assignment:
            self.log.info("Seek stream partitions to committed offsets (before resuming).")
            await self._wait(consumer.perform_seek(), timeout=self.app.conf.broker_request_timeout)
            rewound = await self._rewind_uncommitted(assignment)
            self._record_start_positions(assignment, rewound)
        consumer.resume_partitions({tp for tp in assignment if not self._is_changelog_tp(tp)})
        self.completed.set()
        self.app.flow_control.resume()
        consumer.resume_flow()
        await cast(Any, self.app)._fetcher.maybe_start()
        self.tables.on_actives_ready()
        if not self.app.assignor.assigned_standbys():
            self.tables.on_standbys_ready()
        self.app.on_rebalance_end()
        self.log.info("Worker ready")

    def _record_start_positions(self, assignment: set[TP], rewound: dict[TP, int]) -> None:
        """Where each stream partition resumes in this generation (the kit's contiguity guard
        starts from there, and commits only what follows it without a gap)."""
        committed = cast(Any, self.app.consumer)._committed_offset
        positions: dict[TP, int] = {}
        for tp in assignment:
            if self._is_changelog_tp(tp):
                continue
            offset = rewound.get(tp, committed.get(tp))
            if offset is not None:
                positions[tp] = int(offset)
        START_POSITIONS[cast(faust.App, self.app)] = (
            int(self.app.consumer_generation_id),
            positions,
        )

    async def _rewind_uncommitted(self, assignment: set[TP]) -> dict[TP, int]:
        if self.app.conf.consumer_auto_offset_reset != "earliest":
            return {}
        consumer = self.app.consumer
        never = [
            tp
            for tp in assignment
            if not self._is_changelog_tp(tp)
            and cast(Any, consumer)._committed_offset.get(tp) is None
        ]
        if never:
            self.log.info(
                "Rewinding never-committed partitions to their earliest offset: %s", sorted(never)
            )
            earliest = await asyncio.wait_for(
                consumer.earliest_offsets(*never),
                timeout=self.app.conf.broker_request_timeout,
            )
            # seek_wait, not seek: Faust's aiokafka driver runs `seek` straight on the consumer
            # thread's client from this thread. Here the fetcher may already be running (it read
            # the changelogs), and a seek that races its fetch left that fetch waiting forever:
            # a worker restored from its changelogs then processed nothing (seen here).
            # `seek_wait` makes the seek on the consumer's own thread and waits for it.
            await consumer.seek_wait(dict(earliest))
            return {tp: int(offset) for tp, offset in earliest.items()}
        return {}


class SomaTableManager(TableManager):
    """Faust's table manager with the seek-first recovery (set as the `TableManager` setting)."""

    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = SeekFirstRecovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery


def stream_buffer(stream: faust.StreamT) -> Any:
    """The queue behind `stream`: Faust's FlowControlQueue, maxsize = stream_buffer_maxsize."""
    return cast(faust.ChannelT, stream.channel).queue


def watch_stream_buffer(queue: Any, observe: Callable[[int], None]) -> None:
    """Call `observe(depth)` after every record put into a stream buffer."""
    for name in ("force_put_nowait", "put_nowait"):
        put = getattr(queue, name)

        def counted(item: Any, _put: Callable[[Any], None] = put) -> None:
            _put(item)
            observe(queue.qsize())

        setattr(queue, name, counted)
