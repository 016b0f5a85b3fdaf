"""The memory service is down: write-through parks every write in the outbox, the outbox drain
holds them in its table, and delivers each exactly once (one WAL record) when the service is
back, also when the drain worker is killed with kill -9 mid-drain and restarted without state."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from processors.write_plan import memory_write_to_write
from soma.settings import Settings
from tests.support.flows import WorkerProcess, create_topics, wait_committed
from tests.support.processes import free_port, wait_until
from tests.support.somabrain import StandIn
from tests.support.write_through import (
    NAMESPACE,
    SOURCES,
    TrafficProducer,
    duplicates,
    planned,
    topic_values,
    turn_traffic,
)

pytestmark = [pytest.mark.fault, pytest.mark.integration]

WorkerFactory = Callable[..., WorkerProcess]


@pytest.fixture
def drain_factory(
    write_through_stack: tuple[Settings, str], tmp_path: Path
) -> Iterator[Callable[..., WorkerProcess]]:
    """`make(data_dir_name, env)`: outbox-drain workers of one fresh group, stopped after."""
    settings, _ = write_through_stack
    create_topics(settings, ("memory.outbox.dlq",))
    app_id = f"od-{uuid.uuid4().hex[:10]}"
    started: list[WorkerProcess] = []

    def make(data_dir: str, env: dict[str, str]) -> WorkerProcess:
        worker = WorkerProcess(
            "outbox-drain",
            settings,
            app_id,
            free_port(),
            tmp_path / data_dir,
            tmp_path / f"{data_dir}.log",
            env=env,
        )
        started.append(worker.start())
        return worker

    yield make
    for worker in started:
        worker.stop()


def pending(drain: WorkerProcess, tenant: str) -> int | None:
    """The tenant's rows in the drain's table, None while its partitions are still loading."""
    response = drain.get("/outbox/summary")
    if response.status_code != 200:
        return None
    body: dict[str, Any] = response.json()
    if body["loading"]:
        return None
    return int(body["tenants"].get(tenant, {}).get("pending", 0))


def park_while_down(
    settings: Settings,
    app_id: str,
    standin: StandIn,
    write_through: WorkerProcess,
    tenant: str,
) -> list[Any]:
    standin.fault("store_down")  # batch writes answer 503, /readyz says not ready
    write_through.wait_ready()
    traffic = turn_traffic([tenant], sessions=4, turns=25, writes=30)
    producer = TrafficProducer(settings)
    producer.send(traffic)
    producer.flush()
    for source in SOURCES:
        wait_committed(settings, app_id, settings.topic_prefix + source, timeout_s=120)
    assert topic_values(settings, "memory.wal") == []
    assert len(topic_values(settings, "memory.outbox")) == len(traffic)
    return traffic


def assert_delivered_once(settings: Settings, standin: StandIn, tenant: str, sent: list[Any]):
    expected = planned(sent)
    wal = topic_values(settings, "memory.wal")
    assert not duplicates(wal, "idempotency_key"), "one WAL record per write"
    assert {r["memory_key"] for r in wal} == expected.keys(), "every parked write delivered"
    for record in wal:
        assert record["payload"] == dict(expected[record["memory_key"]].write.value)
    stored = {item["key"] for item in standin.items() if item["tenant"] == tenant}
    assert expected.keys() <= stored
    assert topic_values(settings, "memory.outbox.dlq") == []
    parked = {memory_write_to_write(i["write"], NAMESPACE).key for i in
              topic_values(settings, "memory.outbox")}  # fmt: skip
    assert parked == expected.keys()


def test_parked_writes_wait_while_down_and_drain_once_when_back(
    write_through_stack: tuple[Settings, str],
    write_through_worker_factory: WorkerFactory,
    drain_factory: Callable[..., WorkerProcess],
    standin: StandIn,
) -> None:
    settings, app_id = write_through_stack
    tenant = f"o{uuid.uuid4().hex[:8]}"
    env = {"SOMA_BASE_URL": standin.url, "SOMA_API_TOKEN": standin.token}
    write_through = write_through_worker_factory("wt", env=env)
    drain = drain_factory("drain", env).wait_ready()
    sent = park_while_down(settings, app_id, standin, write_through, tenant)

    wait_until(lambda: pending(drain, tenant) == len(sent), 60, "the drain holds every write")
    assert topic_values(settings, "memory.wal") == [], "nothing sent while the service is down"

    standin.fault("none")
    wait_until(lambda: pending(drain, tenant) == 0, 120, "the outbox drained")
    assert_delivered_once(settings, standin, tenant, sent)


def test_drain_killed_mid_drain_and_restarted_without_state_delivers_once(
    write_through_stack: tuple[Settings, str],
    write_through_worker_factory: WorkerFactory,
    drain_factory: Callable[..., WorkerProcess],
    standin: StandIn,
) -> None:
    settings, app_id = write_through_stack
    tenant = f"o{uuid.uuid4().hex[:8]}"
    env = {"SOMA_BASE_URL": standin.url, "SOMA_API_TOKEN": standin.token}
    write_through = write_through_worker_factory("wt", env=env)
    first = drain_factory("first", env).wait_ready()
    sent = park_while_down(settings, app_id, standin, write_through, tenant)
    wait_until(lambda: pending(first, tenant) == len(sent), 60, "the drain holds every write")

    # Slow the service down so the drain is mid-way when it is killed.
    standin.fault("slow", delay_s=0.3)
    wait_until(
        lambda: 0 < len(topic_values(settings, "memory.wal")) < len(sent),
        60,
        "the drain to be part-way",
        interval_s=0.2,
    )
    first.kill9()
    standin.fault("none")
    second = drain_factory("second", env).wait_ready(timeout_s=120)
    wait_until(lambda: pending(second, tenant) == 0, 120, "the outbox drained")
    assert_delivered_once(settings, standin, tenant, sent)
