"""The record keys topics received since a moment: what a worker that died may already have sent."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from soma.settings import Settings
from topics.consumers import consumer_queue_bounds
from topics.errors import BrokerUnavailable


def keys_since(
    settings: Settings,
    topics: Sequence[str],
    since_ms: int,
    *,
    timeout_s: float = 30.0,
    partitions: Sequence[int] | None = None,
) -> dict[str, set[str]]:
    """Physical topic -> keys of its records timestamped at or after `since_ms`, up to the end
    each partition had when the read began. Blocking: run it off the event loop.

    Reads by assignment (no group join, nothing committed); raises BrokerUnavailable when the
    broker does not answer in time, so a flow retries instead of trusting a partial read.
    `partitions` limits the read to those partitions of every topic.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"soma-tail-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            **consumer_queue_bounds(settings),
        }
    )
    found: dict[str, set[str]] = {topic: set() for topic in topics}
    try:
        metadata = consumer.list_topics(timeout=timeout_s)
        wanted = [
            TopicPartition(topic, partition, since_ms)
            for topic in topics
            for partition in metadata.topics[topic].partitions
            if partitions is None or partition in partitions
        ]
        starts = consumer.offsets_for_times(wanted, timeout=timeout_s)
        pending: dict[tuple[str, int], int] = {}  # (topic, partition) -> end offset
        assign = []
        for start in starts:
            if start.offset < 0:  # no record at or after since_ms
                continue
            _, high = consumer.get_watermark_offsets(start, timeout=timeout_s)
            if start.offset < high:
                pending[(start.topic, start.partition)] = high
                assign.append(start)
        consumer.assign(assign)
        deadline = time.monotonic() + timeout_s
        while pending:
            if time.monotonic() > deadline:
                raise BrokerUnavailable(f"reading {sorted(pending)} did not finish in time")
            message = consumer.poll(0.2)
            if message is None:
                continue
            where = (message.topic() or "", message.partition() or 0)
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    pending.pop(where, None)
                    continue
                raise BrokerUnavailable(f"reading {where}: {error.str()}")
            key = message.key()
            if key is not None:
                found[where[0]].add(key.decode("utf-8", "replace"))
            offset = message.offset()
            if offset is not None and offset + 1 >= pending.get(where, 0):
                pending.pop(where, None)
        return found
    except KafkaException as exc:
        raise BrokerUnavailable(f"reading {list(topics)} since {since_ms}: {exc}") from exc
    finally:
        consumer.close()
