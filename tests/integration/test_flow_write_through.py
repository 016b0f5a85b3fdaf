"""The write-through worker on the real broker and Postgres: every event remembered once, one WAL
record per write, turns linked whatever order their ends arrive in, refusals dead-lettered."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer
from prometheus_client.parser import text_string_to_metric_families

from soma.settings import Settings
from tests.support.flows import WorkerProcess, wait_committed
from tests.support.write_events import memory_write
from tests.support.write_through import (
    SOURCES,
    TrafficProducer,
    duplicates,
    planned,
    stored,
    stored_links,
    topic_values,
    turn_links,
    turn_traffic,
)
from topics.producer import producer_config
from topics.records import RecordContext, build_record
from topics.registry import TopicRegistry

pytestmark = pytest.mark.integration


def test_every_event_is_remembered_once_with_its_wal_record_and_turn_links(
    write_through_stack: tuple[Settings, str],
    write_through_worker_factory: Callable[..., WorkerProcess],
    memory_schema: Settings,
) -> None:
    settings, app_id = write_through_stack
    tenants = [f"wt{uuid.uuid4().hex[:8]}", f"wt{uuid.uuid4().hex[:8]}"]
    producer = TrafficProducer(settings)
    traffic = turn_traffic(tenants, sessions=4, turns=60, writes=30)
    producer.send(traffic)
    producer.flush()
    # Valid JSON that no memory key can hold. The schema refuses it at every producer now; a
    # record written before that rule, or by a producer that skips validation, still arrives.
    send_unvalidated(settings, memory_write(tenants[0], "bad", 0, namespace="no/slash"))

    write_through_worker_factory("w1").wait_ready()
    for source in SOURCES:
        wait_committed(settings, app_id, settings.topic_prefix + source)

    expected = planned(traffic)
    assert len(expected) == len(traffic) == 60 * 3 + 30
    rows = stored(memory_schema, tenants)
    assert rows == {key: dict(write.write.value) for key, write in expected.items()}

    wal = topic_values(settings, "memory.wal")
    assert not duplicates(wal, "idempotency_key"), "one WAL record per write"
    by_key = {record["memory_key"]: record for record in wal}
    assert by_key.keys() == expected.keys()
    for key, record in by_key.items():
        write = expected[key]
        assert record["payload"] == dict(write.write.value)
        assert record["idempotency_key"] == write.idempotency_key
        assert record["event_id"] == write.write_event["event_id"]
        assert record["backend"] == "postgres" and record["acknowledged_at"] >= record["event_time"]

    # Turn ends were shuffled before sending: replies often came before their user message.
    assert stored_links(memory_schema, tenants) == turn_links(traffic)
    assert len(turn_links(traffic)) == 120

    letters = topic_values(settings, "memory.requests.dlq")
    # Refused by the flow's intake against the schema (the same rule as the edge's), before
    # the write plan's own scope check (WriteRefused) would have refused it.
    assert [(d["reason"], d["error_class"].rsplit(".", 1)[-1]) for d in letters] == [
        ("schema", "PoisonRecord")
    ]
    assert "namespace" in letters[0]["error_message"]
    assert topic_values(settings, "memory.outbox") == []
    for source in SOURCES:
        if source != "memory.requests":
            assert topic_values(settings, f"{source}.dlq") == []


def send_unvalidated(settings: Settings, event: dict[str, Any]) -> None:
    """`event` to memory.requests with the key and headers the gateway would give it, unchecked."""
    spec = TopicRegistry(settings.topic_prefix).get("memory.requests")
    shape = build_record(spec, {**event, "namespace": "ok"}, RecordContext(tenant=event["tenant"]))
    producer = Producer(producer_config(settings))
    producer.produce(
        shape.topic, orjson.dumps(event), shape.key_bytes(), headers=list(shape.headers)
    )
    assert producer.flush(30) == 0


def _worker_counter(worker: WorkerProcess, name: str, labels: dict[str, str]) -> float | None:
    for family in text_string_to_metric_families(worker.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return None


def test_a_silent_redis_neither_fails_nor_holds_the_batches(
    write_through_stack: tuple[Settings, str],
    write_through_worker_factory: Callable[..., WorkerProcess],
    memory_schema: Settings,
) -> None:
    """Redis accepts connections and never answers: every generation bump times out, yet every
    write is remembered with its WAL record, and the failed bumps are counted."""
    settings, app_id = write_through_stack
    tenants = [f"wt{uuid.uuid4().hex[:8]}"]
    traffic = turn_traffic(tenants, sessions=2, turns=10, writes=10)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)  # the kernel completes connections nobody accepts or answers
        redis_url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        worker = write_through_worker_factory("w1", env={"SOMA_REDIS_URL": redis_url})
        worker.wait_ready()
        producer = TrafficProducer(settings)
        producer.send(traffic)
        producer.flush()
        for source in SOURCES:
            wait_committed(settings, app_id, settings.topic_prefix + source)
        failed = _worker_counter(
            worker, "soma_recall_cache_generation_bumps_total", {"outcome": "failed"}
        )
        bumped = _worker_counter(
            worker, "soma_recall_cache_generation_bumps_total", {"outcome": "ok"}
        )

    expected = planned(traffic)
    assert stored(memory_schema, tenants).keys() == expected.keys()
    wal = topic_values(settings, "memory.wal")
    assert not duplicates(wal, "idempotency_key")
    assert {record["memory_key"] for record in wal} == expected.keys()
    assert topic_values(settings, "memory.outbox") == []
    assert failed is not None and failed >= 1 and bumped == 0
