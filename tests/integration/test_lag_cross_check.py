"""The lag state/lag.py reads equals what Kafka's own kafka-consumer-groups reports.

A real session-counts worker consumes and commits, then stops (the group is frozen: no
member, no commit can move), and more records arrive; at that moment both readings must
agree partition by partition, and the per-tenant split must be exact.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

import pytest

from processors.partitioning import partition_for
from soma.settings import Settings
from state.lag import GroupTopics, LagReader
from tests.support.flows import TestProducer, WorkerProcess, wait_committed
from tests.support.kafka_tools import describe_group
from topics.registry import TopicRegistry

pytestmark = pytest.mark.integration

BEFORE = [("acme", f"s{i}") for i in range(60)]
# After the stop: 80 records of acme and 40 of globex, spread over every partition.
AFTER = [("acme", f"s{i % 40}") for i in range(80)] + [("globex", f"g{i % 20}") for i in range(40)]


def test_lag_equals_kafka_consumer_groups_for_a_frozen_group(
    flow_stack: tuple[Settings, str], flow_worker_factory: Callable[..., WorkerProcess]
) -> None:
    settings, group = flow_stack
    topic = TopicRegistry(settings.topic_prefix).get("conversation.inbound").name
    worker = flow_worker_factory("w1").wait_ready()
    producer = TestProducer(settings)
    producer.send(BEFORE)
    producer.flush()
    wait_committed(settings, group, topic)
    worker.stop()  # SIGTERM: commits and leaves; nothing moves the group's offsets any more

    started_ms = time.time() * 1000
    producer.send(AFTER)
    producer.flush()

    reader = LagReader(settings, tenant_sample=200)
    try:
        report = reader.read([GroupTopics(group, (topic,), "session-counts")])
    finally:
        reader.close()
    tool = describe_group(settings, group)

    mine = {(p.offsets.topic, p.offsets.partition): p for p in report.group(group)}
    assert {tp for tp in tool if tp[0] == topic} <= set(mine)
    for tp, row in mine.items():
        expected = tool.get(tp)
        if expected is None:  # the tool lists only what a memberless group committed
            assert row.offsets.committed is None, tp
            continue
        assert (row.offsets.committed, row.offsets.end, row.offsets.lag) == (
            expected.current,
            expected.end,
            expected.lag,
        ), tp
    assert sum(row.lag for row in tool.values() if row.lag is not None) == len(AFTER)
    assert sum(p.offsets.lag for p in mine.values()) == len(AFTER)

    # Every partition that lags has its time lag: the wait of its oldest uncommitted record.
    waited_s = (time.time() * 1000 - started_ms) / 1000
    partitions = 6
    lagging = {partition_for(f"{t}/{s}".encode(), partitions) for t, s in AFTER}
    for (_, partition), row in mine.items():
        if partition in lagging:
            assert row.seconds is not None and 0 <= row.seconds <= waited_s + 1.0
        else:
            assert row.seconds == 0.0

    # The sample holds every uncommitted record, so the tenant split is exact.
    tenants = {t.tenant: t for t in report.tenants if t.group == group}
    assert {name: t.offsets for name, t in tenants.items()} == dict(Counter(t for t, _ in AFTER))
    assert all(t.exact and t.seconds is not None for t in tenants.values())
