"""GET /v1/health/memory against real components: a write-through and an outbox-drain worker
(separate processes) on a fresh topic prefix, the SomaBrain stand-in with its store down so the
outbox backlog grows, and the in-process gateway reading the workers, the broker and its backend.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from soma.settings import Settings
from tests.conftest import AuthHeaders, SettingsFactory
from tests.integration.conftest import GatewayClient
from tests.support.flows import WorkerProcess, create_topics, wait_committed
from tests.support.processes import free_port
from tests.support.somabrain import StandIn
from tests.support.write_events import memory_write
from tests.support.write_through import SOURCES, TrafficProducer
from topics.producer import producer_config
from topics.records import RecordContext, build_record
from topics.registry import TopicRegistry

pytestmark = [pytest.mark.integration]

# The spec's app ids: the gateway finds the groups as `<prefix><app id>`, and the prefix is fresh.
WRITE_THROUGH_APP, DRAIN_APP = "soma-write-through", "soma-outbox-drain"
PARKED = 60  # over the 50-write degraded threshold, under the 100-write down threshold


@pytest.fixture
def workers(
    write_through_stack: tuple[Settings, str], tmp_path: Path
) -> Iterator[Callable[[str, str, dict[str, str]], WorkerProcess]]:
    settings, _ = write_through_stack
    create_topics(settings, ("memory.outbox.dlq",))
    started: list[WorkerProcess] = []

    def make(flow: str, app_id: str, env: dict[str, str]) -> WorkerProcess:
        worker = WorkerProcess(
            flow,
            settings,
            settings.topic_prefix + app_id,
            free_port(),
            tmp_path / flow,
            tmp_path / f"{flow}.log",
            env=env,
        )
        started.append(worker.start())
        return worker

    yield make
    for worker in started:
        worker.stop()


def send_old_write(settings: Settings, tenant: str, age_s: float) -> None:
    """One memory write whose record time is `age_s` in the past (a stalled consumer's view)."""
    spec = TopicRegistry(settings.topic_prefix).get("memory.requests")
    record = build_record(spec, memory_write(tenant, "late", 0), RecordContext(tenant=tenant))
    producer = Producer(producer_config(settings))
    producer.produce(
        record.topic,
        record.value,
        record.key_bytes(),
        headers=list(record.headers),
        timestamp=int((time.time() - age_s) * 1000),
    )
    assert producer.flush(30) == 0


async def test_memory_health_classifies_each_signal_per_tenant(
    write_through_stack: tuple[Settings, str],
    workers: Callable[[str, str, dict[str, str]], WorkerProcess],
    standin: StandIn,
    gateway_client: GatewayClient,
    auth_headers: AuthHeaders,
    settings_factory: SettingsFactory,
) -> None:
    settings, _ = write_through_stack
    env = {"SOMA_BASE_URL": standin.url, "SOMA_API_TOKEN": standin.token}
    busy, quiet, late = (f"h{uuid.uuid4().hex[:8]}" for _ in range(3))
    standin.fault("store_down")  # batch writes answer 503, /readyz says not ready
    write_through = workers("write-through", WRITE_THROUGH_APP, env).wait_ready()
    workers("outbox-drain", DRAIN_APP, env).wait_ready()
    producer = TrafficProducer(settings)
    producer.send([("memory.requests", memory_write(busy, "s", n)) for n in range(PARKED)])
    producer.send([("memory.requests", memory_write(quiet, "s", 0))])
    producer.flush()
    group = settings.topic_prefix + WRITE_THROUGH_APP
    for source in SOURCES:
        wait_committed(settings, group, settings.topic_prefix + source, timeout_s=120)

    gateway = settings_factory(
        topic_prefix=settings.topic_prefix,
        stack_dir=settings.stack_dir,  # the workers' internal credential lives there
        base_url=standin.url,
        api_token=standin.token,
    )
    async with gateway_client(gateway) as client:

        async def health(tenant: str, **kwargs: Any) -> dict[str, Any]:
            answer = await client.get(
                "/v1/health/memory", headers=auth_headers(gateway, tenant, **kwargs)
            )
            assert answer.status_code == 200, answer.text
            body: dict[str, Any] = answer.json()
            return body

        async def parked(tenant: str) -> dict[str, Any]:
            body = await health(tenant)
            assert body["components"]["outbox"]["status"] != "unknown", body
            return body

        # The drain picks the parked writes up from memory.outbox; wait until it holds them all.
        deadline = time.monotonic() + 90
        body = await health(busy)
        while body["components"]["outbox"].get("pending") != PARKED:
            assert time.monotonic() < deadline, body
            time.sleep(0.5)
            body = await health(busy)

        assert body["scope"] == "tenant"
        assert [row["tenant"] for row in body["tenants"]] == [busy]
        parts = body["components"]
        assert parts["outbox"]["status"] == "degraded"  # 60 >= 50, < 100
        assert parts["outbox"]["oldest_age_s"] > 0
        assert parts["wal_lag"] == {"status": "ok", "seconds": 0.0, "offsets": 0, "error": None}
        assert parts["backend"]["status"] == "down", parts["backend"]  # the store is down
        assert parts["replication_lag"] is None  # no replication flow ran on this prefix
        # No dead-letter index runs here: unknown, with the reason, and still a 200.
        assert parts["dead_letters"]["status"] == "unknown"
        assert parts["dead_letters"]["error"]
        assert body["status"] == "down"  # the worst component
        assert body["thresholds"]["outbox_pending"] == [50, 100]
        assert body["thresholds"]["wal_lag_s"] == [10.0, 30.0]

        mine = (await parked(quiet))["components"]
        assert mine["outbox"]["pending"] == 1 and mine["outbox"]["status"] == "ok"

        # The write-through worker stops; a write already 45 s old waits: WAL lag is down for
        # its tenant (and the plane), and nobody else's.
        write_through.stop()
        send_old_write(settings, late, age_s=45)
        time.sleep(2.1)  # the gateway's lag read is cached for 2 s: let it expire
        late_wal = (await health(late))["components"]["wal_lag"]
        assert late_wal["status"] == "down" and late_wal["seconds"] >= 45, late_wal
        assert late_wal["offsets"] == 1
        assert (await health(quiet))["components"]["wal_lag"]["status"] == "ok"

        plane = await health("ops", roles=["platform-admin"])
        assert plane["scope"] == "plane"
        rows = {row["tenant"]: row for row in plane["tenants"]}
        assert {busy, quiet, late} <= rows.keys()
        assert rows[busy]["components"]["outbox"]["pending"] == PARKED
        assert rows[late]["components"]["wal_lag"]["status"] == "down"
        assert plane["components"]["outbox"]["pending"] == PARKED + 1
        assert plane["components"]["wal_lag"]["status"] == "down"
        # Plane-wide dead letters come from the DLQ topics' depth: readable, and empty here.
        assert plane["components"]["dead_letters"]["status"] == "ok"
        assert plane["components"]["dead_letters"]["depth"] == 0
