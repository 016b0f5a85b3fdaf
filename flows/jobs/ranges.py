"""Fix a replay's offset range per partition from offsets and timestamps, when the job starts."""

from __future__ import annotations

from confluent_kafka import Consumer, TopicPartition

from flows.errors import SourceTopicMissing
from processors.replay import plan_partition
from processors.tenant_counts import OffsetRange
from soma.settings import Settings
from topics.admin import partition_counts


def plan_ranges(
    settings: Settings,
    topic: str,
    *,
    from_offset: int | None = None,
    to_offset: int | None = None,
    from_time_ms: int | None = None,
    to_time_ms: int | None = None,
    partitions: tuple[int, ...] | None = None,
    timeout_s: float = 10.0,
) -> tuple[OffsetRange, ...]:
    """[first, last) per partition: watermarks now, narrowed by the offsets and times given.

    A time becomes, per partition, the offset of the first record at or after it (the broker's
    time index, `offsets_for_times`), so `--from-time`/`--to-time` select by record timestamp.
    """
    count = partition_counts(settings, [topic], timeout_s)[topic]
    if count is None:
        raise SourceTopicMissing(topic)
    chosen = [p for p in range(count) if partitions is None or p in partitions]
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": "soma-replay-planner",
            "enable.auto.commit": False,
        }
    )
    try:
        marks = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
            for p in chosen
        }
        starts = _at_time(consumer, topic, marks, from_time_ms, timeout_s)
        ends = _at_time(consumer, topic, marks, to_time_ms, timeout_s)
        return tuple(
            plan_partition(
                p,
                low,
                high,
                from_offset=from_offset,
                to_offset=to_offset,
                from_time=starts.get(p),
                to_time=ends.get(p),
            )
            for p, (low, high) in sorted(marks.items())
        )
    finally:
        consumer.close()


def _at_time(
    consumer: Consumer,
    topic: str,
    marks: dict[int, tuple[int, int]],
    time_ms: int | None,
    timeout_s: float,
) -> dict[int, int]:
    """Per partition, the first offset at or after `time_ms` (the high watermark if none)."""
    if time_ms is None:
        return {}
    found = consumer.offsets_for_times(
        [TopicPartition(topic, p, time_ms) for p in marks], timeout=timeout_s
    )
    return {tp.partition: tp.offset if tp.offset >= 0 else marks[tp.partition][1] for tp in found}
