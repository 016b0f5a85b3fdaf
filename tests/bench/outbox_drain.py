"""Benchmark: the outbox drain after an outage vs the backend's own remember_batch capacity; the
cost of a 429.

Run with `make bench` (stack up, memory schema migrated). In one run:

1. Capacity: a plain loop calling the Postgres backend's `remember_batch` with 25 writes at a
   time (the drain's batch), N writes, one tenant: writes/s.
2. Drain: N outbox items of another tenant on `memory.outbox` (an outage's backlog) are parked
   by an outbox-drain worker while Postgres is unreachable; a worker of the same group then
   finds the backend up and delivers them: writes/s from the first to the last WAL record's
   `acknowledged_at`.
   Printed as a share of (1); aim >= 90 %.
3. 429 path: a gateway process whose tenant is over its outbox limit answers memory writes
   with 429; the same gateway's 202 path (produce to Kafka, acks=all) for another tenant:
   p50/p99 of each over sequential requests.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
from confluent_kafka import Producer

from gateway.auth import issue_token
from processors.memory import MemoryScope, MemoryWrite
from processors.write_plan import parse_time, rfc3339
from soma.settings import Settings
from state.memory.factory import memory_backend
from tests.support.flows import WorkerProcess, create_topics, delete_test_topics, read_topic
from tests.support.processes import free_port, running_gateway, wait_until
from topics.producer import producer_config
from topics.records import RecordContext, build_record
from topics.registry import TopicRegistry

WRITES = int(os.environ.get("BENCH_OUTBOX_WRITES", "5000"))
REQUESTS = int(os.environ.get("BENCH_429_REQUESTS", "300"))
JWT = {"bench": "bench-outbox-" + "k" * 40}


def capacity(settings: Settings, tenant: str) -> float:
    """Writes/s of remember_batch(25) in a loop: what the backend itself takes."""

    async def run() -> float:
        backend = memory_backend(settings)
        scope = MemoryScope(tenant, settings.namespace, "default")
        writes = [
            MemoryWrite.for_event(
                scope, f"cap-{i:07d}", {"fact": f"capacity fact {i} " + "x" * 120}, session_id="s"
            )
            for i in range(WRITES)
        ]
        started = time.perf_counter()
        for i in range(0, len(writes), 25):
            await backend.remember_batch(writes[i : i + 25])
        elapsed = time.perf_counter() - started
        await backend.aclose()
        return WRITES / elapsed

    return asyncio.run(run())


def park(settings: Settings, tenant: str, count: int = WRITES) -> None:
    """`count` outbox items on memory.outbox, as write-through parks them during an outage."""
    spec = TopicRegistry(settings.topic_prefix).get("memory.outbox")
    producer = Producer(producer_config(settings, **{"linger.ms": 20}))
    now = rfc3339(datetime.now(UTC))
    for i in range(count):
        key = f"bench-{i:07d}"
        item = {
            "tenant": tenant,
            "idempotency_key": key,
            "write": {
                "event_id": str(uuid.uuid4()),
                "tenant": tenant,
                "session_id": "s",
                "idempotency_key": key,
                "payload": {"fact": f"parked fact {i} " + "x" * 120},
            },
            "attempts": 1,
            "first_failed_at": now,
            "last_error": "benchmark outage",
            "next_attempt_at": now,
        }
        record = build_record(spec, item, RecordContext(tenant=tenant))
        while True:
            try:
                producer.produce(record.topic, record.value, record.key.encode(),
                                 headers=list(record.headers))  # fmt: skip
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    assert producer.flush(60) == 0


def drain_rate(settings: Settings, tenant: str, workdir: Path) -> float:
    """A first worker parks the backlog in its table while Postgres is unreachable and stops;
    a second one (same group and state directory) finds the backend up and drains it, timed by
    its WAL records."""
    create_topics(settings, ("memory.outbox", "memory.outbox.dlq", "memory.wal"))
    park(settings, tenant)
    app_id = f"bench-od-{uuid.uuid4().hex[:8]}"

    def worker(env: dict[str, str]) -> WorkerProcess:
        return WorkerProcess(
            "outbox-drain", settings, app_id, free_port(), workdir / "od", workdir / "od.log",
            env={"SOMA_TOPIC_PREFIX": settings.topic_prefix, **env},
        ).start()  # fmt: skip

    down = worker({"SOMA_POSTGRES_DSN": "postgresql://soma:soma@127.0.0.1:1/soma"})
    try:
        down.wait_ready()
        wait_until(lambda: _parked(down) >= WRITES, 300, "the backlog parked", interval_s=1)
    finally:
        down.stop()
    wal = f"{settings.topic_prefix}memory.wal"
    up = worker({})
    try:
        wait_until(lambda: _count(settings, wal) >= WRITES, 600, "every parked write delivered",
                   interval_s=2)  # fmt: skip
    finally:
        up.stop()
    stamps = sorted(
        parse_time(json.loads(r.value())["acknowledged_at"]).timestamp()  # type: ignore[union-attr]
        for r in read_topic(settings, wal, timeout_s=120)
    )
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


def _parked(worker: WorkerProcess) -> int:
    answer = worker.get("/outbox/summary")
    if answer.status_code != 200:
        return 0
    return sum(t["pending"] for t in answer.json()["tenants"].values())


def _count(settings: Settings, topic: str) -> int:
    from topics.admin import high_watermarks

    return sum(high_watermarks(settings, [topic]).get(topic, {}).values())


def latencies(url: str, token: str, n: int) -> list[float]:
    found = []
    with httpx.Client(base_url=url, timeout=30) as client:
        for i in range(n):
            body = {"session_id": "s", "payload": {"fact": f"bench {i}"}}
            started = time.perf_counter()
            client.post("/v1/memory/remember", json=body,
                        headers={"Authorization": f"Bearer {token}"})  # fmt: skip
            found.append((time.perf_counter() - started) * 1000)
    return found


def throttle_cost(settings: Settings, heavy: str, workdir: Path) -> tuple[list[float], list[float]]:
    """The same gateway: 429s for `heavy` (over the limit: the drain holds its backlog), 202s
    for another tenant."""
    create_topics(settings, ("memory.requests", "memory.requests.dlq"))
    env = {
        "SOMA_TOPIC_PREFIX": settings.topic_prefix,
        "SOMA_JWT_KEYS": json.dumps(JWT),
        "SOMA_JWT_ACTIVE_KID": "bench",
        "SOMA_OUTBOX_TENANT_LIMIT": "10",
        "SOMA_STACK_DIR": str(settings.stack_dir),
    }
    signing = settings.model_copy(update={"jwt_keys": JWT, "jwt_active_kid": "bench"})
    with running_gateway(env, workdir / "gateway.log") as url:
        heavy_token = issue_token(signing, heavy)
        wait_until(
            lambda: latencies(url, heavy_token, 1) and _throttled(url, heavy_token),
            60, "the heavy tenant throttled",
        )  # fmt: skip
        refused = latencies(url, heavy_token, REQUESTS)
        accepted = latencies(url, issue_token(signing, f"x{heavy}"), REQUESTS)
    return refused, accepted


def _throttled(url: str, token: str) -> bool:
    body = {"session_id": "s", "payload": {"fact": "probe"}}
    answer = httpx.post(f"{url}/v1/memory/remember", json=body,
                        headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    return answer.status_code == 429


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1]


def main() -> None:
    run = uuid.uuid4().hex[:8]
    base = Settings()
    settings = base.model_copy(update={"topic_prefix": f"bo{run}."})
    tenant = f"bench{run}"
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        try:
            raw = capacity(settings, f"cap{run}")
            drained = drain_rate(settings, tenant, workdir)
            print(f"backend remember_batch(25) capacity: {raw:,.0f} writes/s ({WRITES} writes)")
            print(f"outbox drain after an outage:        {drained:,.0f} writes/s")
            print(f"ratio drain / capacity: {drained / raw:.2f} (aim >= 0.90)")
            # The drain group of the gateway's back-pressure: the default one under the prefix.
            heavy_workdir = workdir / "t"
            heavy_workdir.mkdir()
            throttled, accepted = _with_backlog(settings, heavy_workdir)
            print(f"429 path: p50 {pct(throttled, 50):.2f} ms  p99 {pct(throttled, 99):.2f} ms")
            print(f"202 path: p50 {pct(accepted, 50):.2f} ms  p99 {pct(accepted, 99):.2f} ms")
            print(f"ratio 429 / 202 at p50: {pct(throttled, 50) / pct(accepted, 50):.2f}")
        finally:
            delete_test_topics(settings, f"bench-od-{run}")


def _with_backlog(settings: Settings, workdir: Path) -> tuple[list[float], list[float]]:
    """A tenant with a backlog the drain cannot deliver (no memory backend reachable)."""
    heavy = f"heavy{uuid.uuid4().hex[:6]}"
    prefix = f"{settings.topic_prefix}t."
    sub = settings.model_copy(update={"topic_prefix": prefix, "stack_dir": workdir})
    create_topics(sub, ("memory.outbox", "memory.outbox.dlq", "memory.wal"))
    park(sub, heavy, count=50)
    worker = WorkerProcess(
        "outbox-drain", sub, f"{prefix}soma-outbox-drain", free_port(), workdir / "od",
        workdir / "od.log", env={"SOMA_POSTGRES_DSN": "postgresql://soma:soma@127.0.0.1:1/soma"},
    ).start()  # fmt: skip
    try:
        worker.wait_ready()
        return throttle_cost(sub, heavy, workdir)
    finally:
        worker.stop()
        delete_test_topics(sub, f"{prefix}soma-outbox-drain")


if __name__ == "__main__":
    main()
