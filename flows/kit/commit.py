"""The one place that decides the commit order of every always-on flow.

Commit order of a batch (one `stream.take_events(...)` body), in this order and no other:

1. Effects. The flow's handler runs (`flows/kit/batches.py`): its external calls (the memory
   backend, a replica) are made, retried in place while transient. They are idempotent on
   their keys, so running them again after a crash changes nothing.
2. Outputs flushed. Output records and dead letters are produced with the project's
   confluent-kafka producer and every one is acknowledged by the broker (acks=all) before
   going on (`send_durably`); a broker outage is retried in place, never skipped.
3. Tables written. Each key the batch changed is written once (`write_tables`): the value
   goes to the local RocksDB store and a changelog record to the broker, and the step waits
   until the broker acknowledged every changelog record (`DurableTable.changelog_durable`).
   After step 2 on purpose: a table never claims progress whose outputs are missing.
4. Offsets committed. The kit commits, for every partition the batch advanced, the next offset
   it has not processed (`FlowRuntime._commit_offsets`), while it still owns the partition in
   the same consumer generation. It processes a partition's records only in offset order from
   where the partition resumed, so that offset never covers a record nobody processed.
5. Events disowned. Every event of the batch is marked acked for Faust without Faust counting
   it, so Faust itself never commits an offset (its acks treat a jump in offsets as records
   to skip; see flows/kit/faust_internals.py).
6. State flushed. The local RocksDB store is a cache of the changelog: written in step 3
   (memtable + WAL, which survives a kill -9 of the process but not of the machine); a
   restart reads only the changelog tail past the offset the store records.

Why this is exactly-once in effect, given at-least-once delivery:

- A batch is made durable (steps 1-3) before any of its offsets is committed (4). A
  crash anywhere replays from the last committed offset: effects are idempotent, outputs
  are keyed (consumers dedupe), and flows whose table values carry the last source offset
  folded (session counts) skip what they already counted.
- A kill -9 between writing the local store and the changelog being durable leaves the store
  ahead of the changelog. The replay then skips those events, but the handler still returns
  their keys, so the values are written again and the changelog catches up before offsets
  move (`processors/session_counts.fold_batch`).
- Step 3 waits explicitly: Faust's own buffer flush gives up after 0.1 s without progress and
  does not count the record being handed to aiokafka, so it can return early.
- Rebalance: Faust waits for in-flight events to be acked before it gives partitions away, so
  a batch in progress finishes (and commits) first; events of partitions lost meanwhile, and
  events buffered across a rebalance, are left unprocessed; after every rebalance partitions
  are sought to their committed offsets before resuming (`flows/kit/faust_internals.py`), so
  whatever was left is delivered again, in order.
- A batch whose commit steps fail stops the process (`run_batches`). Letting the exception
  escape is not enough: `take_events` acks its batch in a `finally` that also runs when the
  body raised, and Faust's supervisor restarts the agent, so the failed batch's offsets would
  be committed and its events lost.

Limit: without Kafka transactions a worker fenced out of its group while still running (a
pause longer than the session timeout) can write one stale batch to a changelog partition
another worker now owns; the owner's next write of those keys supersedes it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any

from faust.types import EventT

from flows.failpoints import (
    AFTER_CHANGELOG_DURABLE,
    AFTER_LOCAL_WRITE,
    AFTER_OUTPUTS_DURABLE,
    failpoint,
)
from flows.kit.faust_internals import DurableTable, acting_for
from processors.policies import Backoff
from soma.errors import TransientError
from topics.producer import EventProducer
from topics.records import OutgoingRecord

log = logging.getLogger(__name__)

EXIT_BATCH_FAILED = 70  # EX_SOFTWARE: the supervisor restarts the worker, Kafka replays the batch
OUTPUT_BACKOFF = Backoff(base_s=0.2, cap_s=5.0)

# (key, value or None to delete it, an event of the key's partition)
TableWrites = Sequence[tuple[bytes, "bytes | None", EventT]]


async def send_durably(
    producer: EventProducer,
    records: Sequence[OutgoingRecord],
    *,
    on_retry: Callable[[BaseException], None] = lambda exc: None,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
) -> None:
    """Step 2: produce `records` and return once the broker acknowledged each one.

    A record the broker did not acknowledge (outage, timeout) is sent again, with backoff,
    until it is; a record the broker refuses for good raises (the batch fails).
    """
    pending, attempt = list(records), 0
    while pending:
        settled = await producer.send_settled(pending)
        failed = [(r, err) for r, err in zip(pending, settled, strict=True) if err is not None]
        if not failed:
            return
        for _, error in failed:
            if not isinstance(error, TransientError):
                raise error
        attempt += 1
        on_retry(failed[0][1])
        log.warning("%d output records not acknowledged (%s); retrying", len(failed), failed[0][1])
        pending = [record for record, _ in failed]
        await sleep(OUTPUT_BACKOFF.delay(attempt, random.random))


async def write_tables(writes: Iterable[tuple[DurableTable, TableWrites]]) -> int:
    """Step 3: write each (key, value, event) and wait for every changelog ack."""
    written = 0
    tables = list(writes)
    for table, rows in tables:
        for key, value, event in rows:
            with acting_for(event):
                if value is not None:
                    table[key] = value
                elif key in table:
                    del table[key]  # a tombstone in the changelog
            written += 1
    failpoint(AFTER_LOCAL_WRITE)
    for table, _ in tables:
        await table.changelog_durable()
    failpoint(AFTER_CHANGELOG_DURABLE)
    return written


async def commit_batch(
    producer: EventProducer,
    records: Sequence[OutgoingRecord],
    tables: Iterable[tuple[DurableTable, TableWrites]],
    *,
    on_retry: Callable[[BaseException], None] = lambda exc: None,
) -> None:
    """Steps 2 and 3, in order; step 4 is the caller returning."""
    if records:
        await send_durably(producer, records, on_retry=on_retry)
    failpoint(AFTER_OUTPUTS_DURABLE)
    await write_tables(tables)


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
