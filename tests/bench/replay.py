"""Benchmark: replay events/s against a raw confluent-kafka read of the same range, archive
export and import events/s, and replay into the replica.

Run with `make bench` (the stack must be up). One fresh topic set per run; every figure reads
the same memory.wal range, in the same run, so the ratios compare like with like here.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, TopicPartition

from flows.jobs.replay import ReplayReport, ReplayRequest, run_replay
from processors.memory_keys import MemoryScope
from soma.settings import Settings
from state.memory.snapshot import wipe_scope
from tests.support.flows import create_topics, delete_test_topics, isolated_settings
from tests.support.wal import WalProducer, wal_event

EVENTS = int(os.environ.get("BENCH_REPLAY_EVENTS", "200000"))
REPLICA_EVENTS = int(os.environ.get("BENCH_REPLICA_EVENTS", "20000"))
TENANTS = [f"bench{t}" for t in range(20)]


def raw_read(settings: Settings, topic: str) -> float:
    """Events/s of a plain confluent-kafka loop reading the whole topic (assign, no group)."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": "bench-raw",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "fetch.max.bytes": 52428800,
            "queued.min.messages": 100000,
        }
    )
    started = time.perf_counter()
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        pending, read = set(partitions), 0
        while pending:
            for msg in consumer.consume(2000, 0.1):
                error = msg.error()
                if error is None:
                    read += 1
                elif error.code() == KafkaError._PARTITION_EOF:
                    pending.discard(msg.partition())
        return read / (time.perf_counter() - started)
    finally:
        consumer.close()


def line(label: str, report: ReplayReport) -> str:
    return (
        f"  {label:34} {report.events_per_s:9,.0f} events/s "
        f"({report.tally.read} read, {report.tally.written} written, {report.elapsed_s:.2f} s)"
    )


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = isolated_settings(stack_dir=Path(tmp))
        copy = isolated_settings(stack_dir=Path(tmp))
        create_topics(settings, ("memory.wal",))
        create_topics(copy, ("memory.wal",))
        try:
            producer = WalProducer(settings)
            producer.send(wal_event(TENANTS[n % len(TENANTS)], n) for n in range(EVENTS))
            producer.flush()
            wal = settings.topic_prefix + "memory.wal"
            raw = raw_read(settings, wal)
            to_topic = run_replay(
                settings, ReplayRequest(target="topic", topic="memory.wal", target_topic=None)
            )
            raw_again = raw_read(settings, wal)  # the topic doubled: read it all again
            file = Path(tmp) / "wal.avro"
            exported = run_replay(
                settings, ReplayRequest(target="archive", topic="memory.wal", target_file=file)
            )
            imported = run_replay(copy, ReplayRequest(target="topic", archive=file))
            for tenant in TENANTS:
                wipe_scope(settings.replica_postgres_dsn(), MemoryScope(tenant, "wm"))
            to_replica = run_replay(
                settings,
                ReplayRequest(target="replica", topic="memory.wal", to_offset=REPLICA_EVENTS // 6),
            )
            print(f"replay of memory.wal, {EVENTS} records of ~{len(producer_sample())} bytes")
            print(f"  {'raw confluent-kafka read':34} {raw:9,.0f} events/s")
            print(line("soma replay -> topic (murmur2)", to_topic))
            print(f"  {'raw read of the doubled topic':34} {raw_again:9,.0f} events/s")
            print(f"  ratio replay/raw: {to_topic.events_per_s / raw:.2f}")
            print(line("soma archive export (deflate)", exported))
            print(f"  archive size: {file.stat().st_size / EVENTS:.0f} bytes/record")
            print(line("soma archive import -> topic", imported))
            print(line("soma replay -> replica (Postgres)", to_replica))
        finally:
            delete_test_topics(settings)
            delete_test_topics(copy)


def producer_sample() -> bytes:
    import orjson

    return orjson.dumps(wal_event(TENANTS[0], 0))


if __name__ == "__main__":
    main()
