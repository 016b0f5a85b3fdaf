"""GET /v1/admin/kafka/status against the real broker: a fresh topic and group, whose numbers
are exactly what the test produced and committed."""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from gateway.auth import ADMIN_ROLE
from soma.settings import Settings
from tests.conftest import AuthHeaders, SettingsFactory
from tests.integration.conftest import GatewayClient, TopicSetFactory

pytestmark = pytest.mark.integration

CLOSED_PORT = "127.0.0.1:1"  # nothing listens on port 1: connections are refused at once
TOPIC = "conversation.inbound"  # 6 partitions


def produce(settings: Settings, topic: str, per_partition: dict[int, int], age_s: float) -> None:
    """`per_partition[p]` records to partition p, stamped `age_s` seconds ago."""
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    stamp = int((time.time() - age_s) * 1000)
    for partition, count in per_partition.items():
        for i in range(count):
            producer.produce(topic, b"{}", key=f"acme/s{i}", partition=partition, timestamp=stamp)
    assert producer.flush(15) == 0


def commit(settings: Settings, group: str, topic: str, offsets: dict[int, int]) -> None:
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": group})
    try:
        consumer.commit(
            offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()], asynchronous=False
        )
    finally:
        consumer.close()


async def test_status_reports_what_was_produced_and_committed(
    topic_set_factory: TopicSetFactory, gateway_client: GatewayClient, auth_headers: AuthHeaders
) -> None:
    settings, registry = topic_set_factory([TOPIC])
    name = registry.get(TOPIC).name
    group = f"test-status-{uuid.uuid4().hex[:8]}"
    produce(settings, name, {0: 5, 1: 3, 2: 4}, age_s=60)
    commit(settings, group, name, {0: 2, 1: 3})  # partition 2: never committed
    admin = auth_headers(settings, roles=(ADMIN_ROLE,))
    async with gateway_client(settings) as client:
        response = await client.get(
            "/v1/admin/kafka/status", params={"topic": TOPIC, "group": group}, headers=admin
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["topic"], body["group"]) == (name, group)
    rows = {row["partition"]: row for row in body["partitions"]}
    assert sorted(rows) == list(range(6))
    numbers = {p: (r["committed"], r["end"], r["lag"]) for p, r in rows.items()}
    assert numbers == {
        0: (2, 5, 3),
        1: (3, 3, 0),
        2: (None, 4, 4),  # counted from the low watermark, as the plane's consumers start
        3: (None, 0, 0),
        4: (None, 0, 0),
        5: (None, 0, 0),
    }
    assert body["total_lag"] == 7
    # The records were stamped a minute ago: that is how long the oldest has waited.
    for p in (0, 2):
        assert 60 <= rows[p]["lag_seconds"] < 120, rows[p]
    assert rows[1]["lag_seconds"] == 0


async def test_unknown_topic_bad_parameter_and_role(
    topic_set_factory: TopicSetFactory, gateway_client: GatewayClient, auth_headers: AuthHeaders
) -> None:
    settings, _ = topic_set_factory([TOPIC])
    admin = auth_headers(settings, roles=(ADMIN_ROLE,))
    async with gateway_client(settings) as client:
        unknown = await client.get(
            "/v1/admin/kafka/status", params={"topic": "no.such.topic", "group": "g"}, headers=admin
        )
        # Registered, but not created under this prefix: unknown on the broker.
        absent = await client.get(
            "/v1/admin/kafka/status", params={"topic": "memory.wal", "group": "g"}, headers=admin
        )
        bad = await client.get(
            "/v1/admin/kafka/status", params={"topic": TOPIC, "group": "a b"}, headers=admin
        )
        missing = await client.get("/v1/admin/kafka/status", params={"topic": TOPIC}, headers=admin)
        tenant = await client.get(
            "/v1/admin/kafka/status",
            params={"topic": TOPIC, "group": "g"},
            headers=auth_headers(settings),
        )
    assert unknown.status_code == 404 and unknown.json()["error"] == "unknown_topic"
    assert absent.status_code == 404 and absent.json()["error"] == "unknown_topic"
    assert bad.status_code == 422 and bad.json()["field"] == "/query/group", bad.text
    assert missing.status_code == 422 and missing.json()["field"] == "/query/group"
    assert tenant.status_code == 403


async def test_broker_down_is_503_with_retry_after(
    stack_ready: Settings,
    settings_factory: SettingsFactory,
    gateway_client: GatewayClient,
    auth_headers: AuthHeaders,
) -> None:
    settings = settings_factory(kafka_bootstrap=CLOSED_PORT, health_timeout_s=0.4)
    started = time.monotonic()
    async with gateway_client(settings) as client:
        response = await client.get(
            "/v1/admin/kafka/status",
            params={"topic": TOPIC, "group": "g"},
            headers=auth_headers(settings, roles=(ADMIN_ROLE,)),
        )
    assert response.status_code == 503, response.text
    assert response.json()["error"] == "broker_unavailable"
    assert int(response.headers["Retry-After"]) >= 1
    assert time.monotonic() - started < 15
