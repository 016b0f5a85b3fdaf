"""How far a flow got on each source partition, kept in its own table so replays can be skipped.

A flow whose effects and outputs are not naturally idempotent in the topic (the write-through
flow's WAL records) must not redo a record it already finished. The consumer group's committed
offset lags the work (Faust commits every few seconds), so after a kill -9 Kafka redelivers
records whose outputs are already on the broker. The flow therefore writes, in commit-order
step 3 (after its outputs are durable), the last offset it finished per source topic into a
table key that lives on the same partition as those records; a record at or below that offset
is a replay.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from processors.partitioning import partition_for

POSITION_KEY_PREFIX = "~positions"  # '~' cannot start a tenant id, so no record key collides


@functools.cache
def position_key(partition: int, partitions: int) -> str:
    """The table key holding the positions of source partition `partition`.

    A table key must be co-partitioned with the records that change it, so the key is chosen
    to hash (murmur2) onto `partition`: the first `~positions/<p>/<salt>` that does.
    """
    if not 0 <= partition < partitions:
        raise ValueError(f"partition {partition} outside 0..{partitions - 1}")
    salt = 0
    while True:
        key = f"{POSITION_KEY_PREFIX}/{partition}/{salt}"
        if partition_for(key.encode(), partitions) == partition:
            return key
        salt += 1


@dataclass(frozen=True)
class SourcePositions:
    """Last offset finished per source topic, for one partition number, and when.

    `written_at_ms` (wall clock of the worker that finished the batch) bounds where a successor
    looks for outputs of a batch that died before its positions became durable: they were
    produced after the positions before them were written.
    """

    offsets: Mapping[str, int] = field(default_factory=dict)  # physical topic -> offset
    written_at_ms: int = 0  # 0: never written

    def done(self, topic: str, offset: int) -> bool:
        """True when the record at `offset` of `topic` was already finished (a replay)."""
        return offset <= self.offsets.get(topic, -1)

    def advanced(self, topic: str, offset: int) -> SourcePositions:
        """These positions with `topic` moved to `offset` (never backwards)."""
        if self.done(topic, offset):
            return self
        return replace(self, offsets={**self.offsets, topic: offset})

    def stamped(self, now_ms: int) -> SourcePositions:
        return replace(self, written_at_ms=now_ms)

    def to_dict(self) -> dict[str, object]:
        return {"offsets": dict(self.offsets), "written_at_ms": self.written_at_ms}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> SourcePositions:
        """Parse a stored value; refuses anything but a map of topic names to offsets."""
        offsets, written = data.get("offsets"), data.get("written_at_ms", 0)
        if (
            not isinstance(offsets, Mapping)
            or not all(
                isinstance(k, str) and isinstance(v, int) and v >= -1 for k, v in offsets.items()
            )
            or not isinstance(written, int)
            or written < 0
        ):
            raise ValueError(f"not source positions: {dict(data)!r}")
        return cls(dict(offsets), written)


NO_POSITIONS = SourcePositions()
