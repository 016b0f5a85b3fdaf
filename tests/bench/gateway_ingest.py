"""Benchmark: gateway batch ingest vs a raw confluent-kafka loop, and single-request latency.

Run with `make bench` (the stack must be up). Both sides send the same payloads to fresh topics in
the same run, so the ratio compares like with like on this machine.
"""

from __future__ import annotations

import json
import os
import statistics
import time
import uuid
from dataclasses import replace

import httpx
import orjson
from confluent_kafka import Producer

from gateway.auth import issue_token
from soma.settings import Settings
from tests.conftest import TEST_JWT_KEYS
from tests.support.processes import running_gateway
from topics.admin import apply_topics, delete_topics
from topics.registry import TopicRegistry

BATCH = 500
BATCHES = int(os.environ.get("BENCH_BATCHES", "40"))
LATENCY_RATE_PER_S = float(os.environ.get("BENCH_RATE", "50"))
LATENCY_SECONDS = float(os.environ.get("BENCH_SECONDS", "10"))


def _event(tenant: str, i: int) -> dict[str, object]:
    return {
        "event_id": str(uuid.uuid4()),
        "session_id": f"s{i % 97}",
        "tenant": tenant,
        "role": "user",
        "message": f"benchmark message {i} " + "x" * 160,
        "attachments": [],
        "metadata": {"bench": True},
        "type": "user",
        "version": "sa01-v1",
    }


def bench_raw(settings: Settings, topic: str, batches: list[list[dict[str, object]]]) -> float:
    """Events/s of a plain confluent-kafka loop: serialize, key, produce, flush per batch."""
    producer = Producer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "partitioner": "murmur2_random",
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 2,
            "compression.type": "lz4",
        }
    )
    start = time.perf_counter()
    for batch in batches:
        for event in batch:
            key = f"{event['tenant']}/{event['session_id']}".encode()
            producer.produce(topic, orjson.dumps(event), key)
            producer.poll(0)
        producer.flush(30)
    elapsed = time.perf_counter() - start
    return sum(len(b) for b in batches) / elapsed


def bench_gateway(base: str, token: str, batches: list[list[dict[str, object]]]) -> float:
    """Events/s through POST /v1/events/conversation.inbound, 500 events a request, validated."""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
        start = time.perf_counter()
        for batch in batches:
            response = client.post("/v1/events/conversation.inbound", json={"events": batch})
            response.raise_for_status()
        elapsed = time.perf_counter() - start
    return sum(len(b) for b in batches) / elapsed


def bench_latency(base: str, token: str) -> tuple[float, float, int]:
    """p50/p99 ms of single POST /v1/session/message at a fixed request rate."""
    headers = {"Authorization": f"Bearer {token}"}
    samples: list[float] = []
    interval = 1.0 / LATENCY_RATE_PER_S
    total = int(LATENCY_RATE_PER_S * LATENCY_SECONDS)
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        next_at = time.perf_counter()
        for i in range(total):
            now = time.perf_counter()
            if now < next_at:
                time.sleep(next_at - now)
            next_at += interval
            start = time.perf_counter()
            response = client.post(
                "/v1/session/message", json={"session_id": f"lat{i % 11}", "message": f"ping {i}"}
            )
            response.raise_for_status()
            samples.append((time.perf_counter() - start) * 1000)
    quantiles = statistics.quantiles(samples, n=100)
    return quantiles[49], quantiles[98], len(samples)


def main() -> None:
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    settings = Settings(topic_prefix=prefix, jwt_keys=TEST_JWT_KEYS, jwt_active_kid="k2")
    registry = TopicRegistry(prefix)
    topic_specs = [registry.get("conversation.inbound")]
    raw_topic = f"{prefix}raw.conversation.inbound"
    apply_topics(settings, topic_specs)
    apply_topics(settings, [replace(topic_specs[0], name=raw_topic)])
    tenant = "bench"
    batches = [[_event(tenant, b * BATCH + i) for i in range(BATCH)] for b in range(BATCHES)]
    try:
        bench_raw(settings, raw_topic, batches[:2])  # warm-up: connections and metadata
        raw_rate = bench_raw(settings, raw_topic, batches)
        token = issue_token(settings, tenant=tenant, subject="bench")
        env = {
            "SOMA_TOPIC_PREFIX": prefix,
            "SOMA_JWT_KEYS": json.dumps(TEST_JWT_KEYS),
            "SOMA_JWT_ACTIVE_KID": "k2",
        }
        with running_gateway(env) as base:
            bench_gateway(base, token, batches[:2])
            gateway_rate = bench_gateway(base, token, batches)
            p50, p99, n = bench_latency(base, token)
    finally:
        delete_topics(settings, [topic_specs[0].name, raw_topic])
    events = BATCH * BATCHES
    print(f"events per side:                 {events} ({BATCHES} batches of {BATCH})")
    print(f"raw confluent-kafka produce:     {raw_rate:12,.0f} events/s")
    print(f"gateway batch ingest (validated):{gateway_rate:12,.0f} events/s")
    print(f"ratio gateway/raw:               {gateway_rate / raw_rate:12.3f}")
    print(
        f"single request latency @ {LATENCY_RATE_PER_S:.0f} req/s over {n} requests: "
        f"p50 {p50:.1f} ms, p99 {p99:.1f} ms"
    )


if __name__ == "__main__":
    main()
