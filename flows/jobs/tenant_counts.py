"""Bounded Bytewax job: count a range of a conversation topic per tenant into analytics topic."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import bytewax.operators as op
from bytewax.connectors.kafka import (
    KafkaError,
    KafkaSink,
    KafkaSinkMessage,
    KafkaSource,
    KafkaSourceMessage,
)
from bytewax.dataflow import Dataflow
from bytewax.testing import run_main
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from flows.errors import SourceTopicMissing
from processors.tenant_counts import (
    OffsetRange,
    TenantCount,
    add_event,
    tenant_event_count,
    tenant_for_key,
)
from soma.job_progress import JobProgress
from soma.settings import Settings
from topics.admin import partition_counts
from topics.producer import producer_config
from topics.records import RecordContext, build_record
from topics.registry import TopicRegistry, TopicSpec

JOB_NAME = "tenant-counts"
SOURCE = "conversation.inbound"
TARGET = "analytics.session_counts"

Message = KafkaSourceMessage[bytes | None, bytes | None]


@dataclass
class JobReport:
    """What a run read and wrote."""

    job_id: str
    source: str
    target: str
    ranges: tuple[OffsetRange, ...]
    counts: dict[str, int] = field(default_factory=dict)  # tenant -> events counted

    @property
    def events(self) -> int:
        return sum(self.counts.values())


def plan_ranges(
    settings: Settings,
    topic: str,
    *,
    start_offset: int | None = None,
    end_offset: int | None = None,
    timeout_s: float = 10.0,
) -> tuple[OffsetRange, ...]:
    """Fix the range now, so the job ends even while producers keep writing.

    From the low watermark (or `start_offset`) to the high watermark seen at planning time (or
    `end_offset`, exclusive), per partition.
    """
    partitions = partition_counts(settings, [topic], timeout_s)[topic]
    if partitions is None:
        raise SourceTopicMissing(topic)
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": "soma-job-planner",
            "enable.auto.commit": False,
        }
    )
    try:
        ranges = []
        for p in range(partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
            first = low if start_offset is None else max(low, start_offset)
            last = high if end_offset is None else min(high, end_offset)
            ranges.append(OffsetRange(p, first, max(first, last)))
        return tuple(ranges)
    finally:
        consumer.close()


def build_flow(
    settings: Settings,
    report: JobReport,
    target_spec: TopicSpec,
    *,
    now_ms: int,
    progress: JobProgress | None = None,
) -> Dataflow:
    """The dataflow: read the range, count per tenant (`fold_final`), write one record each."""
    by_partition = {r.partition: r for r in report.ranges}
    brokers = settings.kafka_bootstrap.split(",")
    # KafkaSource takes one starting offset for every partition: start at the smallest and
    # filter; an offset below a partition's low watermark resets to its earliest record.
    start = min((r.from_offset for r in report.ranges), default=OFFSET_BEGINNING)

    def select(msg: Message | KafkaError[bytes | None, bytes | None]) -> tuple[str, int] | None:
        """(tenant, event time in ms) of a record inside the planned range, else None."""
        if not isinstance(msg, KafkaSourceMessage) or msg.partition is None:
            return None  # KafkaSource raises on errors
        bounds = by_partition.get(msg.partition)
        if bounds is None or msg.offset is None or msg.offset not in bounds:
            return None
        if progress is not None:
            progress.record(msg.partition, msg.offset)
        if msg.key is None:
            return None  # a keyless record names no tenant
        timestamp = msg.timestamp[1] if msg.timestamp else 0
        return tenant_for_key(msg.key), timestamp

    def to_sink(item: tuple[str, TenantCount | None]) -> KafkaSinkMessage[bytes, bytes]:
        tenant, acc = item
        assert acc is not None  # fold_final only emits keys that received an event
        report.counts[tenant] = acc.count
        event = tenant_event_count(
            tenant,
            acc,
            source_topic=report.source,
            offsets=report.ranges,
            job_id=report.job_id,
            computed_at_ms=now_ms,
        )
        record = build_record(target_spec, event, RecordContext(tenant=tenant))  # validates
        return KafkaSinkMessage(
            key=record.key_bytes() or b"", value=record.value, headers=record.headers
        )

    flow = Dataflow("tenant_counts")
    source = KafkaSource(
        brokers,
        [report.source],
        tail=False,
        starting_offset=start,
        add_config={"auto.offset.reset": "earliest"},
    )
    events = op.filter_map("in_range", op.input("read", flow, source), select)
    by_tenant = op.key_on("tenant", events, lambda event: event[0])
    counted = op.fold_final(
        "count", by_tenant, lambda: None, lambda acc, event: add_event(acc, event[1])
    )
    out = op.map("record", counted, to_sink)
    # Bytewax's sink ignores a message's partition and hashes with CRC32 unless told otherwise:
    # the shared producer config sets partitioner=murmur2_random.
    sink_config = {
        key: _librdkafka_value(value)
        for key, value in producer_config(settings).items()
        if key != "bootstrap.servers"
    }
    op.output("write", out, KafkaSink(brokers, target_spec.name, add_config=sink_config))
    return flow


def _librdkafka_value(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def run_job(
    settings: Settings,
    *,
    source: str = SOURCE,
    target: str = TARGET,
    start_offset: int | None = None,
    end_offset: int | None = None,
    job_id: str | None = None,
) -> JobReport:
    """Plan the range, run the dataflow to completion in this process, return the report."""
    registry = TopicRegistry(settings.topic_prefix)
    source_name = registry.get(source).name
    ranges = plan_ranges(settings, source_name, start_offset=start_offset, end_offset=end_offset)
    target_spec = registry.get(target)
    report = JobReport(
        job_id=job_id or f"tenant-counts-{uuid.uuid4().hex[:12]}",
        source=source_name,
        target=target_spec.name,
        ranges=ranges,
    )
    # It joins no consumer group: its progress against the planned range is its lag.
    progress = JobProgress(
        settings,
        JOB_NAME,
        source_name,
        [(r.partition, r.from_offset, r.to_offset) for r in ranges],
    )
    if all(r.from_offset == r.to_offset for r in ranges):
        progress.finish()
        return report  # nothing to read, so nothing to write
    flow = build_flow(
        settings, report, target_spec, now_ms=int(time.time() * 1000), progress=progress
    )
    run_main(flow)
    progress.finish()
    return report


def describe(report: JobReport) -> Sequence[str]:
    """Lines for the CLI."""
    lines = [
        f"job {report.job_id}: {report.events} events of {len(report.counts)} tenants "
        f"from {report.source} -> {report.target}"
    ]
    lines += [f"  {tenant}: {count}" for tenant, count in sorted(report.counts.items())]
    return lines
