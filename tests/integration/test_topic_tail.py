"""keys_since on the real broker: the keys a topic received from a moment on, nothing earlier."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Producer

from soma.settings import Settings
from tests.integration.conftest import TopicSetFactory
from topics.producer import producer_config
from topics.tail import keys_since

pytestmark = pytest.mark.integration


def test_keys_since_reads_every_partition_from_a_timestamp_to_the_end(
    topic_set_factory: TopicSetFactory,
) -> None:
    settings, registry = topic_set_factory(["memory.wal", "memory.outbox"])
    wal, outbox = registry.get("memory.wal").name, registry.get("memory.outbox").name
    producer = Producer(producer_config(settings))
    now_ms = int(time.time() * 1000)

    def send(topic: str, keys: list[str], timestamp_ms: int) -> None:
        for key in keys:
            producer.produce(topic, b"{}", key.encode(), timestamp=timestamp_ms)
        assert producer.flush(10) == 0

    old = [f"acme/old-{n}" for n in range(20)]
    new = [f"acme/new-{n}" for n in range(40)]  # spread over the six partitions by murmur2
    send(wal, old, now_ms - 60_000)
    send(wal, new, now_ms)
    send(outbox, ["acme/parked"], now_ms)

    found = keys_since(settings, [wal, outbox], now_ms - 1_000)
    assert found == {wal: set(new), outbox: {"acme/parked"}}
    assert keys_since(settings, [wal], now_ms + 60_000) == {wal: set()}  # nothing that late


def test_keys_since_an_empty_topic_is_empty(
    topic_set_factory: TopicSetFactory, stack_ready: Settings
) -> None:
    settings, registry = topic_set_factory(["memory.outbox"])
    outbox = registry.get("memory.outbox").name
    assert keys_since(settings, [outbox], 0) == {outbox: set()}
