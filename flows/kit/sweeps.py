"""Periodic work over a table's rows on each owned partition (`FlowSpec.sweep`): retries, timers.

A sweep is how a flow acts on what it keeps rather than on what arrives: the outbox drain
delivers the writes its table holds once their backoff has passed. The kit keeps a small
summary of every row per owned partition in memory (loaded from the local store the first time
the partition is swept in a consumer generation, then kept current by every write the flow
makes), calls the flow's handler with them, and makes the result durable in the batch commit
order: effects, then outputs and dead letters acknowledged, then table writes acknowledged. A
sweep commits no offsets and takes the runtime's lock, so it never interleaves with a batch;
the partitions of one round are swept concurrently, each by one task.

A sweep that made something durable is followed at once by another (a backlog drains at the
backend's pace, not one quota per interval); one that did nothing waits the interval.

A sweep whose commit steps fail ends the process, like a batch (flows/kit/commit.py): its
outputs may be on the broker without its table writes, and only a restart (which reloads the
rows from the changelog) makes the flow see the rows as they are.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from faust.types import TP

from flows.kit.batches import FlowRuntime, TableOverlay, _PendingView
from flows.kit.commit import EXIT_BATCH_FAILED
from flows.kit.dead_letters import DeadLetter
from flows.kit.faust_internals import partition_event, partition_rows
from flows.spec import BatchResult, Sweep
from soma import metrics
from soma.errors import TransientError
from soma.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class _SweepContext:
    settings: Settings
    resources: Any
    partitions: int
    partition: int
    committed_offset: int
    fresh: bool  # rows loaded from the store and not swept yet: a previous owner may have acted
    views: dict[str, _PendingView]

    def table(self, name: str) -> _PendingView:
        return self.views[name]


class SweepRunner:
    """Runs one flow's sweep in a worker; told by the runtime about every row written."""

    def __init__(self, runtime: FlowRuntime, sweep: Sweep, source: str) -> None:
        self.runtime, self.sweep, self.source = runtime, sweep, source
        self.summaries: dict[int, dict[str, Any]] = {}  # partition -> key -> summary
        self._loaded: dict[int, int] = {}  # partition -> generation its summaries were loaded in
        self._wake = asyncio.Event()
        self.fresh: set[int] = set()  # partitions loaded (from the store) since their last sweep
        runtime.sweeper = self

    def wake(self) -> None:
        """Sweep now instead of at the next interval (a manual flush)."""
        self._wake.set()

    def row_written(self, table: str, partition: int, key: str, value: Any) -> None:
        if table != self.sweep.table or partition not in self.summaries:
            return  # not loaded yet: the load reads the store, which has it
        rows = self.summaries[partition]
        if value is None:
            rows.pop(key, None)
        else:
            rows[key] = self.sweep.summarize(value)

    async def run_forever(self) -> None:
        """Sweep every owned partition each interval until cancelled; never raises."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.sweep.interval_s)
            self._wake.clear()
            try:
                await self.sweep_all()
            except asyncio.CancelledError:
                raise
            except Exception:  # a sweep's own fault must not stop the next one
                name = self.runtime.spec.name
                log.exception("%s: sweep failed; trying again next interval", name)

    async def sweep_all(self) -> None:
        runtime = self.runtime
        if runtime.rebalancing():
            return
        owned = sorted(tp.partition for tp in runtime.owned() if tp.topic == self.source)
        for gone in set(self.summaries) - set(owned):
            self.summaries.pop(gone, None)
            self._loaded.pop(gone, None)
        # One round holds the lock for every partition and sweeps them concurrently: each
        # partition is still swept by one task (its rows in order), while one partition's
        # backend call overlaps another's broker acknowledgements.
        async with runtime.lock:
            if runtime.rebalancing():
                return
            runtime.sync_generation()
            live = [p for p in owned if TP(self.source, p) in runtime.owned()]
            results = await asyncio.gather(
                *(self.sweep_partition(p) for p in live), return_exceptions=True
            )
        for partition, result in zip(live, results, strict=True):
            if isinstance(result, BaseException):
                log.error(
                    "%s: sweep of partition %d failed: %r",
                    runtime.spec.name,
                    partition,
                    result,
                    exc_info=result,
                )

    async def sweep_partition(self, partition: int) -> None:
        runtime = self.runtime
        generation = runtime.generation()
        if self._loaded.get(partition) != generation:
            self.summaries[partition] = self._load(partition)
            self._loaded[partition] = generation
            self.fresh.add(partition)
        rows = self.summaries[partition]
        event = partition_event(self.source, partition)
        overlays = {
            t.name: TableOverlay(runtime._reader(t.name, {partition: event}), t.decode, t.default)
            for t in runtime.spec.tables
        }
        views = {name: _PendingView(overlay) for name, overlay in overlays.items()}
        ctx = _SweepContext(
            runtime.settings,
            runtime.resources,
            runtime.partitions,
            partition,
            runtime.committed_offset(TP(self.source, partition)),
            partition in self.fresh,
            views,
        )
        started = time.perf_counter()
        try:
            result = await self.sweep.handler(dict(rows), ctx)
        except TransientError as exc:
            log.warning("%s: sweep of partition %d: %s", runtime.spec.name, partition, exc)
            return
        self.fresh.discard(partition)
        if not isinstance(result, BatchResult):
            raise TypeError(f"{runtime.spec.name} sweep returned {type(result).__name__}")
        if not (result.writes or result.outputs or result.dead_rows):
            return
        if generation != runtime.generation() or TP(self.source, partition) not in runtime.owned():
            return  # lost meanwhile: nothing becomes durable, the new owner sweeps again
        for name, writes in result.writes.items():
            for key in writes:
                if runtime.partition_of(name, key) != partition:
                    raise ValueError(f"sweep of {partition} wrote {name}[{key!r}] elsewhere")
        dead = [DeadLetter(d.record, d.reason, d.error, d.attempts) for d in result.dead_rows]
        records = [runtime.dead_letter_record(d) for d in dead]
        records.extend(runtime.output_record(o) for o in result.outputs)
        try:
            await runtime.make_durable(
                records, result.writes, {partition: event}, dead, result.outputs
            )
        except BaseException:
            log.critical(
                "%s: sweep of partition %d could not be made durable; exiting (rows reload "
                "from the changelog on restart)",
                runtime.spec.name,
                partition,
                exc_info=True,
            )
            logging.shutdown()
            os._exit(EXIT_BATCH_FAILED)
        metrics.FLOW_BATCH_SECONDS.labels(runtime.spec.name).observe(time.perf_counter() - started)

    def _load(self, partition: int) -> dict[str, Any]:
        runtime = self.runtime
        spec = runtime.spec.table(self.sweep.table)
        store = runtime.tables[self.sweep.table]
        rows: dict[str, Any] = {}
        for key, raw in partition_rows(store, partition):
            rows[key.decode()] = self.sweep.summarize(spec.decode(orjson.loads(raw)))
        log.info(
            "%s: partition %d holds %d %s rows", runtime.spec.name, partition, len(rows), spec.name
        )
        return rows

    def all_summaries(self) -> Mapping[int, Mapping[str, Any]]:
        """The summaries of every partition loaded so far (for the flow's status pages)."""
        return self.summaries
