"""The memory backend is down: writes are parked in memory.outbox, complete and replayable; nothing
is lost or dead-lettered for it, and writes reach the backend again once it is back."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from processors.write_plan import memory_write_to_write
from soma.settings import Settings
from tests.support.flows import WorkerProcess, wait_committed
from tests.support.processes import wait_until
from tests.support.somabrain import StandIn
from tests.support.write_through import (
    NAMESPACE,
    SOURCES,
    Sent,
    TrafficProducer,
    duplicates,
    planned,
    topic_values,
    turn_links,
    turn_traffic,
)

pytestmark = [pytest.mark.fault, pytest.mark.integration]

WorkerFactory = Callable[..., WorkerProcess]


def committed(settings: Settings, app_id: str) -> None:
    for source in SOURCES:
        wait_committed(settings, app_id, settings.topic_prefix + source, timeout_s=120)


def assert_parked_exactly(items: list[dict[str, Any]], sent: list[Sent]) -> None:
    """The outbox holds one item per sent event, each replaying exactly the planned write."""
    assert not duplicates(items, "idempotency_key")
    expected = planned(sent)
    replayed = {memory_write_to_write(i["write"], NAMESPACE).key: i for i in items}
    assert replayed.keys() == expected.keys()
    for key, item in replayed.items():
        assert memory_write_to_write(item["write"], NAMESPACE) == expected[key].write
        assert item["last_error"] and item["attempts"] in (0, 1)
    carried = {(k["from_key"], k["to_key"], k["type"]) for i in items for k in i.get("links", [])}
    assert carried == turn_links(sent), "the links the parked writes owe travel with them"


def assert_nothing_dead_lettered(settings: Settings) -> None:
    for source in SOURCES:
        assert topic_values(settings, f"{source}.dlq") == []


def test_postgres_unreachable_parks_every_write_in_the_outbox(
    write_through_stack: tuple[Settings, str], write_through_worker_factory: WorkerFactory
) -> None:
    settings, app_id = write_through_stack
    # Nothing listens on port 1: every connection is refused at once.
    env = {"SOMA_POSTGRES_DSN": "postgresql://soma:soma@127.0.0.1:1/soma"}
    traffic = turn_traffic([f"d{uuid.uuid4().hex[:8]}"], sessions=3, turns=30, writes=20)
    producer = TrafficProducer(settings)
    producer.send(traffic)
    producer.flush()
    write_through_worker_factory("state", env=env).wait_ready()
    committed(settings, app_id)

    assert topic_values(settings, "memory.wal") == []
    assert_parked_exactly(topic_values(settings, "memory.outbox"), traffic)
    assert_nothing_dead_lettered(settings)


def test_somabrain_down_then_back_parks_then_delivers(
    write_through_stack: tuple[Settings, str],
    write_through_worker_factory: WorkerFactory,
    standin: StandIn,
) -> None:
    settings, app_id = write_through_stack
    tenant = f"d{uuid.uuid4().hex[:8]}"
    env = {"SOMA_BASE_URL": standin.url, "SOMA_API_TOKEN": standin.token}
    producer = TrafficProducer(settings)
    write_through_worker_factory("state", env=env).wait_ready()

    standin.fault("store_down")  # batch writes answer 503, /readyz says not ready
    while_down = turn_traffic([tenant], sessions=3, turns=20, writes=10)
    producer.send(while_down)
    producer.flush()
    committed(settings, app_id)
    assert topic_values(settings, "memory.wal") == []
    assert_parked_exactly(topic_values(settings, "memory.outbox"), while_down)

    standin.fault("none")
    # Writes flow to the backend again once the breaker lets its trial call through; until
    # then they keep going to the outbox. Send a turn at a time until one reaches the WAL.
    after: list[Sent] = []

    def delivered() -> bool:
        turn = turn_traffic([tenant], sessions=1, turns=1, writes=0)
        producer.send(turn)
        producer.flush()
        after.extend(turn)
        committed(settings, app_id)
        return bool(topic_values(settings, "memory.wal"))

    wait_until(delivered, timeout_s=90, what="a write to reach the backend again", interval_s=1)
    wal = topic_values(settings, "memory.wal")
    parked = topic_values(settings, "memory.outbox")
    expected = planned([*while_down, *after])
    in_wal = {r["memory_key"] for r in wal}
    in_outbox = {memory_write_to_write(i["write"], NAMESPACE).key for i in parked}
    assert not in_wal & in_outbox, "each write is either acknowledged or parked, never both"
    assert in_wal | in_outbox == expected.keys(), "nothing lost"
    assert planned(while_down).keys() <= in_outbox
    assert planned(after[-3:]).keys() <= in_wal  # the last turn went straight through
    items = {item["key"] for item in standin.items() if item["tenant"] == tenant}
    assert in_wal <= items
    assert_nothing_dead_lettered(settings)
