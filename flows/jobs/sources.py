"""Bounded Bytewax sources of a replay: a planned offset range of a topic, or an archive file.

`RangeSource` reads exactly [from, to) of each partition (one assigned consumer per
partition, no group): Bytewax's own KafkaSource takes one start offset for every partition and
reads to the end of the log, so a range chosen by time (a different start per partition) or
ending before the log's end would be read and thrown away.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, cast

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


class _RangePartition(StatefulSourcePartition[SourceRecord, int]):
    def __init__(self, settings: Settings, topic: str, bounds: OffsetRange, start: int) -> None:
        self._topic, self._bounds, self._next = topic, bounds, start
        self._consumer = _consumer(settings)
        self._consumer.assign([TopicPartition(topic, bounds.partition, start)])
        self._closed = False

    def next_batch(self) -> list[SourceRecord]:
        if self._next >= self._bounds.to_offset:
            self.close()
            raise StopIteration
        batch = []
        for msg in self._consumer.consume(BATCH, POLL_S):
            error = msg.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    # Past the last record that exists below `to` (compaction leaves gaps).
                    self._next = self._bounds.to_offset
                    break
                raise KafkaException(error)
            offset = msg.offset() or 0
            if offset >= self._bounds.to_offset:
                self._next = self._bounds.to_offset
                break
            headers = cast(list[tuple[str, bytes | None]], msg.headers() or [])
            batch.append(
                SourceRecord(
                    topic=self._topic,
                    partition=self._bounds.partition,
                    offset=offset,
                    key=msg.key(),
                    value=msg.value(),
                    headers=tuple(headers),
                    timestamp_ms=msg.timestamp()[1],
                )
            )
            self._next = offset + 1
        return batch

    def snapshot(self) -> int:
        return self._next

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._consumer.close()


class RangeSource(FixedPartitionedSource[SourceRecord, int]):
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


class _ArchivePartition(StatefulSourcePartition[SourceRecord, int]):
    def __init__(self, path: Path, mapping: AvroMapping, topic: str, skip: int) -> None:
        self._file = path.open("rb")
        self._records: Iterator[Any] = iter(fastavro.reader(self._file))
        self._mapping, self._topic, self._read = mapping, topic, 0
        for _ in range(skip):
            next(self._records, None)
            self._read += 1

    def next_batch(self) -> list[SourceRecord]:
        batch = []
        for datum in self._records:
            batch.append(from_datum(datum, self._mapping, self._topic))
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


class ArchiveSource(FixedPartitionedSource[SourceRecord, int]):
    """Every record of an archive file, in the order it was written."""

    def __init__(self, path: Path, mapping: AvroMapping, topic: str) -> None:
        self._path, self._mapping, self._topic = path, mapping, topic

    def list_parts(self) -> list[str]:
        return ["archive"]

    def build_part(
        self, step_id: str, for_part: str, resume_state: int | None
    ) -> _ArchivePartition:
        return _ArchivePartition(self._path, self._mapping, self._topic, resume_state or 0)
