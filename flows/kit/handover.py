"""Outputs a predecessor already sent: checked once per source partition after it changes hands.

A flow that records its finished positions (processors/source_positions.py) skips every replay
they cover. One gap is left: a worker that dies after its outputs were acknowledged but before
the changelog acknowledged its positions, and whose successor has no local store (another
worker, or a wiped state directory), leaves a batch that looks unfinished although its outputs
are on the broker. Those outputs were produced after the positions before them were written,
so the successor reads the keys its output topics received since then and, for the next
batch-size worth of events of that partition, does not send an output whose key is there. This
happens once per partition per change of hands (positions this process did not write), never
in steady state.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from flows.spec import Output
from processors.intake import Event
from processors.keys import record_key
from processors.source_positions import SourcePositions
from soma.settings import Settings
from topics.registry import TopicRegistry

log = logging.getLogger(__name__)

CLOCK_SKEW_MS = 5_000  # wall clocks of two workers (and of a producer) may disagree this much
Reader = Callable[[Settings, list[str], int], Mapping[str, set[str]]]


@dataclass
class _Check:
    sent: Mapping[str, set[str]]  # physical output topic -> record keys found there
    left: int  # outputs of the partition still to compare against `sent`


def _keys_since(settings: Settings, topics: list[str], since_ms: int) -> Mapping[str, set[str]]:
    from topics.tail import keys_since  # a broker client: loaded only when needed

    return keys_since(settings, topics, since_ms)


@dataclass
class Handover:
    """Per worker process: the positions it last wrote, and the checks still open."""

    flow: str
    outputs: tuple[str, ...]  # the flow's output topics (registry names)
    window: int  # outputs one unfinished batch of a predecessor can hold (its batch size)
    read: Reader = _keys_since  # blocking; run in a thread
    finished: dict[int, SourcePositions] = field(default_factory=dict)
    checks: dict[int, _Check] = field(default_factory=dict)

    async def drop_sent(
        self,
        settings: Settings,
        outputs: Sequence[Output],
        found: Mapping[int, SourcePositions],
        events: Sequence[Event],
    ) -> tuple[list[Output], set[int]]:
        """`outputs` without those a predecessor already sent (same topic, same record key),
        and the partitions whose check starts with this batch (pass them to `finish`).

        `found` holds the positions the batch started from, per partition of `events`.
        """
        by_partition = Counter(o.cause.partition for o in outputs if o.cause is not None)
        new = {p for p in by_partition if found[p] != self.finished.get(p)}
        if new:
            sent = await self._read_sent(settings, found, events, new)
            self.checks.update({p: _Check(sent, self.window) for p in new})
        registry = TopicRegistry(settings.topic_prefix)
        kept = [o for o in outputs if not self._sent_before(o, registry)]
        for partition, count in by_partition.items():
            check = self.checks.get(partition)
            if check is not None:
                check.left -= count
                if check.left <= 0:
                    del self.checks[partition]
        if len(kept) < len(outputs):
            log.warning(
                "%s: %d outputs were sent by the partition's previous owner; not sent again",
                self.flow,
                len(outputs) - len(kept),
            )
        return kept, new

    def finish(
        self,
        found: Mapping[int, SourcePositions],
        written: Mapping[int, SourcePositions],
        checked: set[int],
    ) -> None:
        """Remember the positions a batch writes, for partitions known to be this process's:
        those it finished last, and those checked in this batch."""
        for partition, positions in written.items():
            if found[partition] == self.finished.get(partition) or partition in checked:
                self.finished[partition] = positions
            else:
                self.checks.pop(partition, None)  # left over from an earlier ownership

    async def _read_sent(
        self,
        settings: Settings,
        found: Mapping[int, SourcePositions],
        events: Sequence[Event],
        partitions: set[int],
    ) -> Mapping[str, set[str]]:
        # A predecessor's outputs came after the positions before them, and after the
        # events that caused them reached the source topic.
        since = min(
            max(
                found[p].written_at_ms,
                min(e.record.timestamp_ms for e in events if e.partition == p),
            )
            for p in partitions
        )
        topics = [f"{settings.topic_prefix}{topic}" for topic in self.outputs]
        return await asyncio.to_thread(self.read, settings, topics, since - CLOCK_SKEW_MS)

    def _sent_before(self, output: Output, registry: TopicRegistry) -> bool:
        check = self.checks.get(output.cause.partition) if output.cause else None
        if check is None:
            return False
        spec = registry.get(output.topic)
        tenant = output.tenant or (output.cause.tenant if output.cause else "")
        key = record_key(spec.key_rule, dict(output.event), tenant)
        return key in check.sent.get(spec.name, set())
