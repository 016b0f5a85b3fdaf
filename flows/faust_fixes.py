"""Corrections to faust-streaming 0.15.3 offset-commit behaviour, applied through its settings.

Recovery resumes the stream partitions and only then seeks them to their committed offsets
(faust/tables/recovery.py `on_recovery_completed`). The fetcher runs meanwhile, so records
fetched before the seek are delivered, the seek rewinds Faust's read offset, and the next
record looks like a jump past a "gap" (offsets Faust then treats as acked). Seen here after a
restore into an empty data dir: every offset of the gap entered the acked list twice, the
committed offset crawled forward by one per commit interval (minutes of apparent lag for a few
hundred records), and a commit could cover records of the gap still waiting in a `take()`
buffer. Seeking while the partitions are still paused closes the race.

The seek itself skips partitions that have no committed offset (aiokafka `seek_to_committed`
only seeks when one exists). Records such a partition delivered during the recovery are
dropped when flow control resumes (its queues clear on resume), so the partition resumes at
the position those records left: its high watermark. Seen here when a second worker took over
partitions the first had processed but not yet committed: nothing was ever committed for them
again, and records the first worker had not reached would have been skipped for good. Such
partitions are sent back to their earliest offset, as `consumer_auto_offset_reset` says.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from faust.tables.manager import TableManager
from faust.tables.recovery import Recovery
from faust.types import TP


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
            await self._rewind_uncommitted(assignment)
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

    async def _rewind_uncommitted(self, assignment: set[TP]) -> None:
        if self.app.conf.consumer_auto_offset_reset != "earliest":
            return
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
            for tp, offset in earliest.items():
                await consumer.seek(tp, offset)


class SomaTableManager(TableManager):
    """Faust's table manager with the seek-first recovery (set as the `TableManager` setting)."""

    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = SeekFirstRecovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery
