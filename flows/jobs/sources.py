"""Bounded Bytewax sources of a replay: a planned offset range of a topic, or an archive file.

`RangeSource` reads exactly [from, to) of each partition (one assigned consumer per
partition, no group): Bytewax's own KafkaSource takes one start offset for every partition and
reads to the end of the log, so a range chosen by time (a different start per partition) or
ending before the log's end would be read and thrown away.

Items are confluent-kafka `Message`s as consumed (or archived records behind the same methods,
`RecordMessage`): building a Python object per record cost more than the rest of a replay.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, cast

import fastavro
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from processors.archive import from_datum
from processors.avro_mapping import AvroMapping
from processors.dead_letters import SourceRecord
from processors.tenant_counts import OffsetRange
from soma.settings import Settings

BATCH = 2000  # records per next_batch; Bytewax hands the batch on as one unit
POLL_S = 0.05


def _consumer(settings: Settings) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": "soma-replay",  # required by librdkafka; assign() joins no group
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "fetch.max.bytes": 52428800,
            "queued.min.messages": 100000,
        }
    )


class Record(Protocol):
    """What every replay step reads from an item: the confluent-kafka `Message` methods."""

    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...
    def headers(self) -> Any: ...  # list of (name, bytes | None), or None (stubs say more)
    def timestamp(self) -> tuple[int, int]: ...


class RecordMessage:
    """An archived record behind the `Message` methods."""

    __slots__ = ("record",)

    def __init__(self, record: SourceRecord) -> None:
        self.record = record

    def topic(self) -> str:
        return self.record.topic

    def partition(self) -> int:
        return self.record.partition

    def offset(self) -> int:
        return self.record.offset

    def key(self) -> bytes | None:
        return self.record.key

    def value(self) -> bytes | None:
        return self.record.value

    def headers(self) -> list[tuple[str, bytes | None]]:
        return list(self.record.headers)

    def timestamp(self) -> tuple[int, int]:
        return (1, self.record.timestamp_ms)  # 1: TIMESTAMP_CREATE_TIME


class _RangePartition(StatefulSourcePartition[Record, int]):
    def __init__(self, settings: Settings, topic: str, bounds: OffsetRange, start: int) -> None:
        self._topic, self._bounds, self._next = topic, bounds, start
        self._consumer = _consumer(settings)
        self._consumer.assign([TopicPartition(topic, bounds.partition, start)])
        self._closed = False

    def next_batch(self) -> list[Record]:
        if self._next >= self._bounds.to_offset:
            self.close()
            raise StopIteration
        end = self._bounds.to_offset
        batch: list[Record] = []
        for msg in self._consumer.consume(BATCH, POLL_S):
            error = msg.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    # Past the last record that exists below `to` (compaction leaves gaps).
                    self._next = end
                    break
                raise KafkaException(error)
            offset = cast(int, msg.offset())
            if offset >= end:
                self._next = end
                break
            batch.append(msg)
            self._next = offset + 1
        return batch

    def snapshot(self) -> int:
        return self._next

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._consumer.close()


class RangeSource(FixedPartitionedSource[Record, int]):
    """Records of `topic` in the planned ranges, each partition in offset order."""

    def __init__(self, settings: Settings, topic: str, ranges: Sequence[OffsetRange]) -> None:
        self._settings, self._topic = settings, topic
        self._ranges = {str(r.partition): r for r in ranges if r.to_offset > r.from_offset}

    def list_parts(self) -> list[str]:
        return sorted(self._ranges)

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _RangePartition:
        bounds = self._ranges[for_part]
        start = bounds.from_offset if resume_state is None else resume_state
        return _RangePartition(self._settings, self._topic, bounds, start)


class _ArchivePartition(StatefulSourcePartition[Record, int]):
    def __init__(self, path: Path, mapping: AvroMapping, topic: str, skip: int) -> None:
        self._file = path.open("rb")
        self._records: Iterator[Any] = iter(fastavro.reader(self._file))
        self._mapping, self._topic, self._read = mapping, topic, 0
        for _ in range(skip):
            next(self._records, None)
            self._read += 1

    def next_batch(self) -> list[Record]:
        batch: list[Record] = []
        for datum in self._records:
            batch.append(RecordMessage(from_datum(datum, self._mapping, self._topic)))
            if len(batch) == BATCH:
                break
        if not batch:
            self.close()
            raise StopIteration
        self._read += len(batch)
        return batch

    def snapshot(self) -> int:
        return self._read

    def close(self) -> None:
        self._file.close()


class ArchiveSource(FixedPartitionedSource[Record, int]):
    """Every record of an archive file, in the order it was written."""

    def __init__(self, path: Path, mapping: AvroMapping, topic: str) -> None:
        self._path, self._mapping, self._topic = path, mapping, topic

    def list_parts(self) -> list[str]:
        return ["archive"]

    def build_part(
        self, step_id: str, for_part: str, resume_state: int | None
    ) -> _ArchivePartition:
        return _ArchivePartition(self._path, self._mapping, self._topic, resume_state or 0)
