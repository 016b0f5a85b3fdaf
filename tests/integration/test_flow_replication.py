"""The replication flow on the real broker and databases: the replica equals the primary."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

from flows.catalog import flow_spec
from gateway.replication_health import REPLICATION
from processors.replication import replica_write
from soma.settings import Settings
from state.memory.snapshot import compare, scope_digest
from tests.conftest import TEST_JWT_KEYS
from tests.integration.conftest import GatewayClient
from tests.support.flows import (
    WorkerProcess,
    create_topics,
    delete_test_topics,
    isolated_settings,
    read_topic,
    wait_committed,
    wait_until,
)
from tests.support.processes import free_port
from tests.support.somabrain import StandIn
from tests.support.wal import WalProducer, scopes, wal_event, write_primary

pytestmark = pytest.mark.integration


@pytest.fixture
def wal_stack(tmp_path: Path, memory_schema: Settings) -> Iterator[tuple[Settings, str]]:
    settings = isolated_settings(stack_dir=tmp_path)
    app_id = f"repl-{uuid.uuid4().hex[:10]}"
    create_topics(settings, ("memory.wal", "memory.wal.dlq"))
    yield settings, app_id
    delete_test_topics(settings, app_id)


@pytest.fixture
def replication_worker(
    wal_stack: tuple[Settings, str], tmp_path: Path
) -> Iterator[Callable[..., WorkerProcess]]:
    settings, app_id = wal_stack
    started: list[WorkerProcess] = []

    def make(name: str = "w") -> WorkerProcess:
        worker = WorkerProcess(
            "replication", settings, app_id, free_port(), tmp_path / name, tmp_path / f"{name}.log"
        )
        started.append(worker.start())
        return worker

    yield make
    for worker in started:
        worker.stop()


def test_every_wal_record_reaches_the_replica_once_and_bad_ones_are_dead_lettered(
    wal_stack: tuple[Settings, str], replication_worker: Callable[..., WorkerProcess]
) -> None:
    settings, app_id = wal_stack
    tenants = [f"r-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    events = [wal_event(t, n) for t in tenants for n in range(120)]
    write_primary(settings, events)
    producer = WalProducer(settings)
    producer.send(events)
    producer.send(events[:40])  # redelivered WAL records: the replica must not change
    # Valid JSON that no memory key can hold: the schema refuses it at every producer now, so
    # it arrives only as a record written before that rule or by one that skips validation.
    producer.send_unvalidated(wal_event(tenants[0], 999, namespace="no/slash"))
    producer.flush()

    worker = replication_worker().wait_ready()
    wait_committed(settings, app_id, settings.topic_prefix + "memory.wal")

    replica = settings.replica_postgres_dsn()
    for scope in scopes(tenants):
        primary = scope_digest(settings.postgres_dsn, scope)
        assert len(primary) == 120
        assert compare(primary, scope_digest(replica, scope)).equal, scope
    letters = read_topic(settings, settings.topic_prefix + "memory.wal.dlq")
    # Refused by the flow's intake against the schema, before the replica's own key check.
    assert [orjson.loads(r.value())["reason"] for r in letters] == ["schema"]
    assert orjson.loads(letters[0].value())["error_class"].endswith("PoisonRecord")

    def caught_up() -> dict[str, object] | None:
        body = worker.get("/health", internal=False).json()
        lag = body["lag"]
        return body if lag.get("offsets") == 0 and lag.get("status") == "ok" else None

    body = wait_until(caught_up, 30, "the lag probe to report the flow caught up")
    assert body["status"] == "ok" and body["replica"]["mode"] == "normal"
    metrics = worker.get("/metrics", internal=False).text
    present = next(
        line
        for line in metrics.splitlines()
        if line.startswith('soma_replication_records_total{outcome="present"}')
    )
    assert float(present.split()[-1]) >= 40
    assert f'soma_replication_last_replicated_timestamp_seconds{{tenant="{tenants[0]}"}}' in metrics


async def test_the_gateway_health_shows_replication_once_it_runs(
    wal_stack: tuple[Settings, str],
    replication_worker: Callable[..., WorkerProcess],
    gateway_client: GatewayClient,
) -> None:
    settings, _ = wal_stack
    edge = settings.model_copy(update={"jwt_keys": TEST_JWT_KEYS, "jwt_active_kid": "k2"})
    async with gateway_client(edge) as client:
        before = (await client.get("/healthz")).json()
        assert REPLICATION not in before["components"]  # no replication flow ran here

    # The flow's real group (the gateway finds workers by it), in this test's topic set.
    group = f"{settings.topic_prefix}{flow_spec('replication').app_id}"
    worker = WorkerProcess(
        "replication",
        settings,
        group,
        free_port(),
        settings.stack_dir / "gw",
        settings.stack_dir / "gw.log",
    ).start()
    try:
        await asyncio.to_thread(worker.wait_ready)
        async with gateway_client(edge) as client:

            async def component() -> dict[str, object]:
                body = (await client.get("/healthz")).json()
                return dict(body["components"].get(REPLICATION) or {}) | {"all": body}

            deadline = asyncio.get_running_loop().time() + 30
            found = await component()
            while found.get("status") != "ok" and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.5)
                found = await component()
            assert found["status"] == "ok", found
            assert "lag 0.0 s, 0 records; group Stable" in str(found["error"])
            await asyncio.to_thread(worker.stop)
            response = await client.get("/healthz")
            gone = response.json()
            assert gone["components"][REPLICATION]["status"] == "down"
            assert response.status_code == 200 and gone["status"] == "degraded"  # in rotation
    finally:
        await asyncio.to_thread(worker.stop)


def test_a_second_somabrain_as_the_replica_through_the_same_client(
    wal_stack: tuple[Settings, str], standin: StandIn, tmp_path: Path
) -> None:
    settings, app_id = wal_stack
    tenants = [f"sb-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    events = [wal_event(t, n) for t in tenants for n in range(60)]
    producer = WalProducer(settings)
    producer.send(events)
    producer.flush()
    standin.fault("breaker_open")  # the replica answers 503 at first: retried, not dead-lettered
    worker = WorkerProcess(
        "replication",
        settings,
        app_id,
        free_port(),
        tmp_path / "sb",
        tmp_path / "sb.log",
        env={"SOMA_REPLICA_BASE_URL": standin.url, "SOMA_REPLICA_API_TOKEN": standin.token},
    ).start()
    try:
        worker.wait_ready()

        def retried() -> bool:
            metrics = worker.get("/metrics", internal=False).text
            return (
                'soma_flow_retries_total{error="BackendUnavailable",flow="replication"}' in metrics
            )

        wait_until(retried, 60, "the replication flow to retry the unavailable replica")
        standin.fault("none")
        wait_committed(settings, app_id, settings.topic_prefix + "memory.wal", timeout_s=120)
    finally:
        worker.stop()
    stored = {i["key"]: i for i in standin.items() if i["tenant"] in tenants}
    expected = {replica_write(e, default_namespace=settings.namespace).key: e for e in events}
    assert set(stored) == set(expected)
    for key, item in stored.items():
        assert item["payload"].items() >= expected[key]["payload"].items()
    assert read_topic(settings, settings.topic_prefix + "memory.wal.dlq") == []
