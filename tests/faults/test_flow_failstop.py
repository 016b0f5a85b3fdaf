"""A batch that fails stops the worker before its events are acked: nothing is skipped."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from confluent_kafka import Producer

from flows.commit_order import EXIT_BATCH_FAILED
from processors.partitioning import partition_for
from soma.settings import Settings
from tests.support.flows import (
    TestProducer,
    WorkerProcess,
    conversation_event,
    group_lag,
    group_offsets,
)
from topics.producer import producer_config
from topics.records import RecordContext, build_record
from topics.registry import TopicRegistry

pytestmark = pytest.mark.fault


def test_a_failing_batch_exits_without_committing_it(
    flow_stack: tuple[Settings, str], flow_worker_factory: Callable[..., WorkerProcess]
) -> None:
    settings, app_id = flow_stack
    good = TestProducer(settings)
    good.send([("acme", "s1")] * 10)
    good.flush()
    # A foreign producer that ignores murmur2: the flow cannot keep this key co-partitioned.
    spec = TopicRegistry(settings.topic_prefix).get("conversation.inbound")
    record = build_record(spec, conversation_event("acme", "s2"), RecordContext(tenant="acme"))
    wrong = (partition_for(record.key.encode(), spec.partitions) + 1) % spec.partitions
    producer = Producer(producer_config(settings))
    producer.produce(record.topic, record.value, record.key.encode(), partition=wrong)
    assert producer.flush(10) == 0

    worker = flow_worker_factory("state")
    assert worker.wait_exit(timeout_s=60) == EXIT_BATCH_FAILED
    assert "NotCoPartitioned" in worker.log_path.read_text()
    # The failed batch was not acked, so nothing of it was committed: a restart replays it.
    committed, high = group_offsets(settings, app_id, spec.name)[wrong]
    assert committed < high, "the record the batch failed on must not be committed"
    assert group_lag(settings, app_id, spec.name) >= 1
