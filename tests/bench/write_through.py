"""Benchmark: the write-through flow vs a raw confluent-kafka loop, and gateway-to-row latency.

Run with `make bench` (the stack must be up, memory schema migrated). In one run:

1. Throughput, one worker: N conversation events already on the source topic are consumed,
   written to the Postgres backend in batches, recorded in the WAL and committed, once by the
   write-through worker (Faust, the kit's commit order, turn state, hand-over check) and once
   by a plain confluent-kafka loop doing the same work with the same backend class. Both are
   timed the same way, from the timestamps of their first and last WAL records.
2. Latency at a fixed rate: events posted to the gateway (10 per request, open loop) at
   BENCH_WT_RATE events/s; for each, the time from the gateway's 2xx to its row being visible
   in Postgres (polled every POLL_S, which adds up to that much to every sample).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil
from confluent_kafka import Consumer, Producer

from gateway.auth import issue_token
from processors.write_plan import parse_time, plan_write, rfc3339
from processors.write_records import wal_record
from soma.settings import Settings
from state.memory.factory import memory_backend
from tests.support.flows import WorkerProcess, create_topics, delete_test_topics, read_topic
from tests.support.processes import free_port, running_gateway, wait_until
from tests.support.write_events import as_event
from tests.support.write_through import TOPICS, TrafficProducer
from topics.admin import apply_topics
from topics.producer import producer_config
from topics.registry import TopicRegistry

EVENTS = int(os.environ.get("BENCH_WT_EVENTS", "20000"))
SESSIONS = 97
BATCH = 500  # the flow's batch size (BATCH_DEFAULT): the raw loop uses the same
RATE = float(os.environ.get("BENCH_WT_RATE", "1000"))  # events/s for the latency part
SECONDS = float(os.environ.get("BENCH_WT_SECONDS", "10"))
PER_REQUEST = 10
JWT = {"bench": "bench-write-through-" + "k" * 32}


def user_message(tenant: str, i: int) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "session_id": f"s{i % SESSIONS}",
        "tenant": tenant,
        "role": "user",
        "message": f"benchmark message {i} about herons and otters " + "x" * 120,
        "occurred_at": rfc3339_now(),
    }


def rfc3339_now() -> str:
    return rfc3339(datetime.now(UTC))


def wal_rate(settings: Settings, topic: str) -> tuple[float, int]:
    """(records/s between the first and the last record of `topic`, records)."""
    records = read_topic(settings, topic, timeout_s=120)
    stamps = sorted(r.timestamp()[1] for r in records)
    return (len(stamps) - 1) / ((stamps[-1] - stamps[0]) / 1000), len(stamps)


def raw_loop(settings: Settings, source: str, wal: str, expected: int) -> None:
    """Consume, write the same memories through the same backend class, produce WAL, commit."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"raw-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    producer = Producer(producer_config(settings))
    backend = memory_backend(settings)
    loop = asyncio.new_event_loop()
    consumer.subscribe([source])
    done = 0
    try:
        while done < expected:
            messages = [m for m in consumer.consume(BATCH, timeout=0.05) if not m.error()]
            if not messages:
                continue
            planned = []
            for message in messages:
                value = orjson.loads(message.value())
                where = {"partition": message.partition() or 0, "offset": message.offset() or 0}
                event = as_event(source, value, **where)
                planned.append(plan_write(event, "conversation", settings.namespace))
            results = loop.run_until_complete(backend.remember_batch([p.write for p in planned]))
            now = datetime.now(UTC)
            for write, result in zip(planned, results, strict=True):
                record = wal_record(write, result, now)
                key = f"{record['tenant']}/{record['idempotency_key']}".encode()
                producer.produce(wal, orjson.dumps(record), key)
            producer.flush(30)
            consumer.commit(asynchronous=False)
            done += len(messages)
    finally:
        loop.run_until_complete(backend.aclose())
        loop.close()
        consumer.close()


@dataclass
class Throughput:
    raw_rate: float  # events/s, from the raw loop's WAL timestamps
    flow_rate: float  # events/s, from the flow's WAL timestamps
    raw_cpu_us: float  # CPU per event of the raw loop's process (its client threads included)
    flow_cpu_us: float  # CPU per event of the worker process, from ready to done


def bench_throughput(settings: Settings, workdir: Path) -> tuple[Throughput, WorkerProcess]:
    registry = TopicRegistry(settings.topic_prefix)
    raw_source, raw_wal = f"{settings.topic_prefix}raw.source", f"{settings.topic_prefix}raw.wal"
    source_spec = registry.get("conversation.inbound")
    apply_topics(
        settings, [replace(source_spec, name=raw_source), replace(source_spec, name=raw_wal)]
    )
    raw_tenant, flow_tenant = f"raw{uuid.uuid4().hex[:6]}", f"flow{uuid.uuid4().hex[:6]}"

    feed = TrafficProducer(settings)
    feed.send([("conversation.inbound", user_message(flow_tenant, i)) for i in range(EVENTS)])
    feed.flush()
    raw_feed = Producer(producer_config(settings, **{"linger.ms": 5}))
    for i in range(EVENTS):
        event = user_message(raw_tenant, i)
        key = f"{raw_tenant}/{event['session_id']}".encode()
        raw_feed.produce(raw_source, orjson.dumps(event), key)
        raw_feed.poll(0)
    raw_feed.flush(60)

    cpu = time.process_time()
    raw_loop(settings, raw_source, raw_wal, EVENTS)
    raw_cpu = time.process_time() - cpu
    raw_rate, raw_count = wal_rate(settings, raw_wal)

    worker = WorkerProcess(
        "write-through",
        settings,
        f"{settings.topic_prefix}bench-wt",
        free_port(),
        workdir / "worker",
        workdir / "worker.log",
    ).start()
    worker.wait_ready(timeout_s=120)
    assert worker.proc is not None
    process = psutil.Process(worker.proc.pid)
    before = process.cpu_times()
    wal = f"{settings.topic_prefix}memory.wal"
    wait_until(
        lambda: sum(_high_watermarks(settings, wal).values()) >= EVENTS,
        300,
        "the flow's WAL",
        interval_s=0.05,
    )
    after = process.cpu_times()
    flow_cpu = (after.user + after.system) - (before.user + before.system)
    flow_rate, flow_count = wal_rate(settings, wal)
    assert raw_count == flow_count == EVENTS, (raw_count, flow_count)
    result = Throughput(raw_rate, flow_rate, raw_cpu / EVENTS * 1e6, flow_cpu / EVENTS * 1e6)
    return result, worker


def _high_watermarks(settings: Settings, topic: str) -> dict[int, int]:
    from topics.admin import high_watermarks

    return high_watermarks(settings, [topic]).get(topic, {})


async def send_at_rate(base: str, token: str, tenant: str) -> dict[str, float]:
    """Post RATE events/s for SECONDS (open loop); event id -> when its 2xx arrived."""
    acked: dict[str, float] = {}
    transport_retries: list[int] = []
    requests = int(RATE * SECONDS / PER_REQUEST)
    interval = PER_REQUEST / RATE
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(
        base_url=base, headers=headers, limits=limits, timeout=30
    ) as client:

        async def post(n: int) -> None:
            events = [user_message(tenant, n * PER_REQUEST + i) for i in range(PER_REQUEST)]
            for attempt in range(3):
                try:
                    response = await client.post(
                        "/v1/events/conversation.inbound", json={"events": events}
                    )
                    break
                except httpx.TransportError:
                    # A keep-alive connection the server closed as it was reused: the events
                    # carry their ids, so sending them again makes no second memory.
                    transport_retries.append(n)
                    if attempt == 2:
                        raise
            response.raise_for_status()
            now = time.time()
            acked.update((event["event_id"], now) for event in events)

        start = time.perf_counter()
        tasks = []
        for n in range(requests):
            delay = start + n * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(post(n)))
        await asyncio.gather(*tasks)
    if transport_retries:
        print(f"  {len(transport_retries)} requests sent again after a connection error")
    return acked


def visible_at(settings: Settings, event_ids: set[str]) -> dict[str, float]:
    """event id -> when the backend acknowledged its write (the WAL's `acknowledged_at`).

    The write-through takes that time right after `remember_batch` returned, i.e. after the
    transaction committed: from then on any reader sees the row.
    """
    wal = f"{settings.topic_prefix}memory.wal"
    found: dict[str, float] = {}

    def all_there() -> bool:
        for record in read_topic(settings, wal, timeout_s=60):
            value = orjson.loads(record.value())
            if value.get("event_id") in event_ids:
                found[value["event_id"]] = parse_time(value["acknowledged_at"]).timestamp()
        return found.keys() >= event_ids

    wait_until(all_there, 120, "every latency event in the WAL", interval_s=1.0)
    return found


def bench_latency(settings: Settings, workdir: Path) -> tuple[float, float, int]:
    tenant = f"lat{uuid.uuid4().hex[:6]}"
    env = {
        "SOMA_TOPIC_PREFIX": settings.topic_prefix,
        "SOMA_JWT_KEYS": json.dumps(JWT),
        "SOMA_JWT_ACTIVE_KID": "bench",
    }
    signer = settings.model_copy(update={"jwt_keys": JWT, "jwt_active_kid": "bench"})
    with running_gateway(env, workdir / "gateway.log") as base:
        acked = asyncio.run(send_at_rate(base, issue_token(signer, tenant), tenant))
    visible = visible_at(settings, set(acked))
    in_order = sorted(acked.items(), key=lambda item: item[1])
    latencies = [(visible[event_id] - at) * 1000 for event_id, at in in_order]
    if os.environ.get("BENCH_WT_TRACE"):  # per second of the run: a backlog shows as growth
        start = in_order[0][1]
        for second in range(int(SECONDS) + 1):
            window = [
                ms
                for (_, at), ms in zip(in_order, latencies, strict=True)
                if int(at - start) == second
            ]
            if window:
                p50, top = statistics.median(window), max(window)
                print(
                    f"  second {second}: {len(window)} events, p50 {p50:.0f} ms, max {top:.0f} ms"
                )
    quantiles = statistics.quantiles(sorted(latencies), n=100)
    return quantiles[49], quantiles[94], len(latencies)


def main() -> None:
    settings = Settings(topic_prefix=f"benchwt{uuid.uuid4().hex[:6]}.")
    create_topics(settings, TOPICS)
    worker: WorkerProcess | None = None
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        try:
            result, worker = bench_throughput(settings, workdir)
            p50, p95, samples = bench_latency(settings, workdir)
        finally:
            if worker is not None:
                worker.stop()
            delete_test_topics(settings, f"{settings.topic_prefix}bench-wt")
    load = f"load average {load_before:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    print(f"events per side:                      {EVENTS} ({SESSIONS} sessions, Postgres backend)")
    print(
        f"raw confluent-kafka loop:             {result.raw_rate:10,.0f} events/s"
        f"   ({result.raw_cpu_us:.0f} us CPU per event)"
    )
    print(
        f"write-through flow (Faust, 1 worker): {result.flow_rate:10,.0f} events/s"
        f"   ({result.flow_cpu_us:.0f} us CPU per event)"
    )
    print(f"ratio flow/raw:                       {result.flow_rate / result.raw_rate:10.3f}")
    print(
        f"gateway 2xx -> row visible @ {RATE:.0f} events/s over {samples} events: "
        f"p50 {p50:.0f} ms, p95 {p95:.0f} ms"
    )
    print(load)


if __name__ == "__main__":
    main()
