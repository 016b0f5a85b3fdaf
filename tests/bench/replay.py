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

from confluent_kafka import Consumer, TopicPartition

from flows.jobs.ranges import plan_ranges
from flows.jobs.replay import ReplayReport, ReplayRequest, run_replay
from processors.memory_keys import MemoryScope
from processors.tenant_counts import OffsetRange
from soma.settings import Settings
from state.memory.snapshot import wipe_scope
from tests.support.flows import create_topics, delete_test_topics, isolated_settings
from tests.support.wal import WalProducer, wal_event

EVENTS = int(os.environ.get("BENCH_REPLAY_EVENTS", "200000"))
REPLICA_EVENTS = int(os.environ.get("BENCH_REPLICA_EVENTS", "20000"))
REPEATS = 3
TENANTS = [f"bench{t}" for t in range(20)]


def raw_read(settings: Settings, topic: str, ranges: tuple[OffsetRange, ...]) -> float:
    """Events/s of a plain confluent-kafka loop reading the same ranges (assign, no group)."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": "bench-raw",
            "enable.auto.commit": False,
            "fetch.max.bytes": 52428800,
            "queued.min.messages": 100000,
        }
    )
    started = time.perf_counter()
    try:
        ends = {r.partition: r.to_offset for r in ranges if r.to_offset > r.from_offset}
        consumer.assign([TopicPartition(topic, r.partition, r.from_offset) for r in ranges])
        read = 0
        while ends:
            for msg in consumer.consume(2000, 0.1):
                if msg.error() is None:
                    read += 1
                    if (msg.offset() or 0) + 1 >= ends.get(msg.partition() or 0, 0):
                        ends.pop(msg.partition() or 0, None)
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
            written_by = int(time.time() * 1000) + 1  # the range: what was written so far
            ranges = plan_ranges(settings, wal)
            pairs = []
            for _ in range(REPEATS):  # alternate: the box is shared, so both see the same load
                raw = raw_read(settings, wal, ranges)
                replayed = run_replay(
                    settings,
                    ReplayRequest(target="topic", topic="memory.wal", to_time_ms=written_by),
                )
                pairs.append((raw, replayed))
            file = Path(tmp) / "wal.avro"
            exported = run_replay(
                settings,
                ReplayRequest(
                    target="archive", topic="memory.wal", target_file=file, to_time_ms=written_by
                ),
            )
            imported = run_replay(copy, ReplayRequest(target="topic", archive=file))
            for tenant in TENANTS:
                wipe_scope(settings.replica_postgres_dsn(), MemoryScope(tenant, "wm"))
            to_replica = run_replay(
                settings,
                ReplayRequest(target="replica", topic="memory.wal", to_offset=REPLICA_EVENTS // 6),
            )
            print(f"replay of memory.wal, {EVENTS} records of ~{len(producer_sample())} bytes")
            for n, (raw, replayed) in enumerate(pairs, 1):
                print(f"  run {n}: raw confluent-kafka read {raw:9,.0f} events/s")
                print(line("       soma replay -> topic (murmur2)", replayed))
            ratios = sorted(r.events_per_s / raw for raw, r in pairs)
            print(f"  ratio replay/raw, median of {REPEATS}: {ratios[len(ratios) // 2]:.2f}")
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
