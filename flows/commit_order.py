"""The one place that decides the commit order of Faust flows, and the table that enforces it.

Commit order of a batch (a `stream.take_events(...)` body), in this order and no other:

1. Effects. The batch is folded by a pure processor and every key it touched is written once
   with `write_batch`: the value goes to the local RocksDB store and a changelog record is
   queued for the broker.
2. Outputs flushed. `write_batch` waits until the broker acknowledged (acks=all) every changelog
   record of the batch (`DurableTable.changelog_durable`); a flow with output topics awaits
   those sends here too. A send that fails raises, the batch is not acked, the worker stops.
3. Events acked. The body returns; `take_events` acks the batch's events, which makes their
   offsets committable.
4. Offsets committed. Faust's consumer commits acked offsets every `broker_commit_interval` and
   before giving partitions away in a rebalance, after flushing its producer again
   (faust/transport/consumer.py `_commit_offsets`).
5. State flushed. The local RocksDB store is a cache of the changelog: it was written in step 1
   (memtable + WAL, which survives a kill -9 of the process but not of the machine) and Faust
   records in it the changelog offset it reflects when each send is acknowledged, so a
   restart only reads the changelog tail past that offset.

Why this is exactly-once in effect, given at-least-once delivery:

- Every key's state carries the last source offset folded into it, and a key's offsets only
  grow (keys are co-partitioned with their source partition). Whatever state a restart begins
  with (local store, or restored from the changelog into an empty data dir), every event of the
  key above that offset is uncommitted, because step 2 precedes steps 3-4: the replay from the
  committed offset re-delivers exactly what is missing, and the fold skips what is already in.
- A kill -9 between steps 1 and 2 can leave the local store ahead of the changelog. The replay
  then skips those events, and `fold_batch` still returns their keys, so `write_batch`
  re-publishes the unchanged values and the changelog catches up before the offsets move.
- Step 2 is explicit instead of relying on step 4's flush alone: Faust's buffer flush gives up
  after 0.1 s without progress and does not count the record being handed to aiokafka, so it
  can return before every changelog record of an acked event is on the broker. Measured cost:
  about 6% of throughput (3.2k vs 3.4k events/s with one write per event).
- Rebalance: Faust waits for in-flight events to be acked before it gives partitions away
  (`stream_wait_empty`), and flows drop buffered events of partitions they no longer own.
- After a rebalance or a restore, stream partitions are sought to their committed offsets
  before they resume, and never-committed ones go back to their earliest offset
  (flows/faust_fixes.py). Stock faust-streaming 0.15.3 could otherwise commit over records it
  had not processed, or skip a partition's uncommitted records after a handover.
- A batch that fails stops the process (`run_batches`). Letting the exception escape is not
  enough: `take()`/`take_events()` ack their batch in a `finally` that also runs when the body
  raised (the generator is closed), and Faust's supervisor restarts the agent, so the failed
  batch's offsets would be committed and its events lost. Measured here: an agent crashing on
  every batch committed all 2100 offsets of its topic and counted nothing.

Limit: without Kafka transactions a worker fenced out of its group while still running (a
pause longer than the session timeout) can write one stale batch to a changelog partition
another worker now owns; the owner's next write of those keys supersedes it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import faust
from faust import streams as faust_streams
from faust.types import EventT
from faust.types.tuples import FutureMessage

from flows.failpoints import AFTER_CHANGELOG_DURABLE, AFTER_LOCAL_WRITE, failpoint

log = logging.getLogger(__name__)

EXIT_BATCH_FAILED = 70  # EX_SOFTWARE: the supervisor restarts the worker, Kafka replays the batch


class DurableTable(faust.Table):
    """A Faust table whose changelog sends a batch can await before its events are acked."""

    _unconfirmed: list[FutureMessage]
    _metadata_ready: bool = False

    def on_key_set(self, key: Any, value: Any) -> None:
        # Same as faust.Table.on_key_set (no windows here), but keeps the send's future.
        fut = self.send_changelog(self.partition_for_key(key), key, value)
        self._pending_sends().append(fut)
        self._sensor_on_set(self, key, value)

    def on_key_del(self, key: Any) -> None:
        fut = self.send_changelog(
            self.partition_for_key(key), key, value=None, value_serializer="raw"
        )
        self._pending_sends().append(fut)
        self._sensor_on_del(self, key)

    def _pending_sends(self) -> list[FutureMessage]:
        try:
            return self._unconfirmed
        except AttributeError:
            self._unconfirmed = []
            return self._unconfirmed

    async def prepare_changelog(self) -> None:
        """Load the changelog's metadata into the producer (once).

        `use_partitioner` picks the partition when the write is queued, which needs the topic's
        partition list; Faust fetches it while declaring topics, and we declare none.
        """
        if not self._metadata_ready:
            producer = self.app.producer._ensure_producer()  # type: ignore[attr-defined]
            await producer.partitions_for(self.changelog_topic.get_topic_name())
            self._metadata_ready = True

    async def changelog_durable(self) -> list[FutureMessage]:
        """Wait until the broker acknowledged every changelog record sent so far (step 2)."""
        pending, self._unconfirmed = self._pending_sends(), []
        if pending:
            await asyncio.gather(*pending)
        return pending


@contextmanager
def acting_for(event: EventT) -> Iterator[None]:
    """Make `event` the current event while a key is written outside the stream's own task.

    `take_events` fills its buffer in a background task, so the body has no current event;
    Faust's RocksDB store picks the partition database of a write from it, and the key's
    source partition is the right one because the changelog is co-partitioned.
    """
    token = faust_streams._current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        faust_streams._current_event.reset(token)


async def write_batch(
    table: DurableTable, writes: Iterable[tuple[Any, Any, EventT]]
) -> list[FutureMessage]:
    """Steps 1 and 2: write each (key, value, source event) and wait for the changelog acks."""
    await table.prepare_changelog()
    for key, value, event in writes:
        with acting_for(event):
            table[key] = value
    failpoint(AFTER_LOCAL_WRITE)
    sent = await table.changelog_durable()
    failpoint(AFTER_CHANGELOG_DURABLE)
    return sent


async def run_batches(
    batches: AsyncIterator[Sequence[EventT]], apply: Callable[[Sequence[EventT]], Awaitable[None]]
) -> None:
    """Apply every batch; if one fails, end the process before its events can be acked.

    Exiting is the same as a kill -9, which the commit order above makes safe: the batch
    is replayed from the last committed offset when the worker restarts.
    """
    async for batch in batches:
        try:
            await apply(batch)
        except BaseException:
            log.critical(
                "batch of %d events failed; exiting so it is not acked (replayed on restart)",
                len(batch),
                exc_info=True,
            )
            logging.shutdown()
            os._exit(EXIT_BATCH_FAILED)
