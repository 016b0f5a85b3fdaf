"""Read consumer lag from the broker: committed offsets, watermarks and sampled record timestamps.

One `LagReader.read()` is one consistent look: offsets of every group, the watermarks of their
topics and the dead-letter topics, and, for each lagging partition, the first records after the
committed offset (their timestamps and tenants) plus the last record. The arithmetic is
`processors/lag.py`. Only `list_consumer_group_offsets` and the consumer's watermark query are
used: librdkafka's `describe_consumer_groups` can abort the process after a broker restart
(librdkafka#4605). librdkafka still crashed the reading process in some broker restarts here
(SIGSEGV, with these calls too), so the exporter runs this reader in a child process
(soma/lag_poller.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from processors.keys import tenant_of
from processors.lag import (
    PartitionOffsets,
    Sampled,
    TenantLag,
    bound_tenants,
    merge_tenant_lags,
    tenant_lag,
    time_lag_seconds,
)
from soma.settings import Settings
from topics.consumers import consumer_queue_bounds
from topics.errors import BrokerUnavailable

TP = tuple[str, int]


def _missing(error: KafkaError | None) -> bool:
    return error is not None and error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART


@dataclass(frozen=True)
class GroupTopics:
    """A consumer group of the plane and the topics it consumes."""

    group: str
    topics: tuple[str, ...]
    flow: str = ""  # the flow that owns the group ("" for a group of no flow)
    tenant_keys: bool = True  # keys start with the tenant (every source topic's rule)


@dataclass(frozen=True)
class PartitionLag:
    group: str
    flow: str
    offsets: PartitionOffsets
    seconds: float | None  # None: no record timestamp could be read in time


@dataclass(frozen=True)
class TenantLagRow:
    group: str
    flow: str
    topic: str
    tenant: str
    offsets: int
    seconds: float | None  # None: none of the tenant's records was sampled
    exact: bool


@dataclass(frozen=True)
class TopicMarks:
    """Low and end offsets of each partition of a topic."""

    topic: str
    marks: dict[int, tuple[int, int]]

    @property
    def depth(self) -> int:
        return sum(end - low for low, end in self.marks.values())

    @property
    def end_sum(self) -> int:
        return sum(end for _, end in self.marks.values())


@dataclass
class LagReport:
    """Everything one poll saw, taken at `taken_at_ms`."""

    taken_at_ms: int
    partitions: list[PartitionLag] = field(default_factory=list)
    tenants: list[TenantLagRow] = field(default_factory=list)
    topics: dict[str, TopicMarks] = field(default_factory=dict)  # group topics and DLQs

    def group(self, name: str) -> list[PartitionLag]:
        return [p for p in self.partitions if p.group == name]


class LagReader:
    """A long-lived admin client and sampling consumer; `read` blocks, so call it off the loop."""

    def __init__(
        self,
        settings: Settings,
        *,
        tenant_sample: int | None = None,
        tenant_series: int | None = None,
        timeout_s: float = 5.0,
    ) -> None:
        self.tenant_sample = settings.lag_tenant_sample if tenant_sample is None else tenant_sample
        self.tenant_series = settings.lag_tenant_series if tenant_series is None else tenant_series
        self.timeout_s = timeout_s
        base: dict[str, str | int | float] = {
            "bootstrap.servers": settings.kafka_bootstrap,
            # While the broker is down every attempt fails; the exporter reports that itself.
            "log_level": 0,
            "reconnect.backoff.max.ms": 2000,
        }
        self._admin = AdminClient(dict(base))
        self._sampler = Consumer(
            {
                **base,
                "group.id": "soma-lag-sampler",  # never subscribes or commits: assign() only
                "enable.auto.commit": False,
                "enable.partition.eof": False,
                "fetch.max.bytes": 4 * 1024 * 1024,
                "max.partition.fetch.bytes": 256 * 1024,
                **consumer_queue_bounds(settings),
            }
        )

    def close(self) -> None:
        self._sampler.close()

    # --- one poll ----------------------------------------------------------------------------

    def read(self, groups: Sequence[GroupTopics], dlq_topics: Iterable[str] = ()) -> LagReport:
        """Offsets, watermarks and lag of every group, and the marks of the DLQ topics."""
        wanted = sorted({t for g in groups for t in g.topics} | set(dlq_topics))
        partitions = self._partitions(wanted)
        marks = self._watermarks([(t, p) for t, ps in partitions.items() for p in ps])
        report = LagReport(taken_at_ms=int(time.time() * 1000))
        for topic, ps in partitions.items():
            report.topics[topic] = TopicMarks(topic, {p: marks[(topic, p)] for p in ps})
        for group in groups:
            tps = [(t, p) for t in group.topics for p in partitions.get(t, [])]
            if tps:
                self._read_group(group, tps, marks, report)
        return report

    def _read_group(
        self,
        group: GroupTopics,
        tps: list[TP],
        marks: dict[TP, tuple[int, int]],
        report: LagReport,
    ) -> None:
        committed = self._committed(group.group, tps)
        offsets = [
            PartitionOffsets(t, p, marks[(t, p)][0], marks[(t, p)][1], committed.get((t, p)))
            for t, p in tps
        ]
        lagging = [o for o in offsets if o.lag > 0]
        samples = self._sample(
            {(o.topic, o.partition): (o.position, o.end) for o in lagging},
            self.tenant_sample if group.tenant_keys else 1,
        )
        newest = self._last_timestamps(lagging, samples)
        tenant_parts: dict[str, list[dict[str, TenantLag]]] = {}
        for o in offsets:
            tp = (o.topic, o.partition)
            sample = samples.get(tp, [])
            oldest = sample[0].timestamp_ms if sample else None
            seconds = time_lag_seconds(o.lag, oldest, newest.get(tp), report.taken_at_ms)
            report.partitions.append(PartitionLag(group.group, group.flow, o, seconds))
            if group.tenant_keys and o.lag > 0:
                tenant_parts.setdefault(o.topic, []).append(tenant_lag(o.lag, sample))
        for topic, parts in tenant_parts.items():
            merged = bound_tenants(merge_tenant_lags(parts), self.tenant_series)
            for tenant, lag in sorted(merged.items()):
                seconds = (
                    None
                    if lag.oldest_ms is None
                    else max(0.0, (report.taken_at_ms - lag.oldest_ms) / 1000)
                )
                report.tenants.append(
                    TenantLagRow(
                        group.group, group.flow, topic, tenant, lag.offsets, seconds, lag.exact
                    )
                )

    # --- broker reads ------------------------------------------------------------------------

    def _partitions(self, topics: list[str]) -> dict[str, list[int]]:
        try:
            metadata = self._admin.list_topics(timeout=self.timeout_s)
        except KafkaException as exc:
            raise BrokerUnavailable(f"cannot read cluster metadata: {exc}") from exc
        found: dict[str, list[int]] = {}
        for name in topics:
            topic = metadata.topics.get(name)
            if topic is None or _missing(topic.error):
                continue  # not created (yet): no series, rather than a failed poll
            troubles = [topic.error] + [p.error for p in topic.partitions.values()]
            trouble = next((e for e in troubles if e is not None), None)
            if trouble is not None:
                # A broker shutting down or electing leaders: a half-seen topic would make
                # its series vanish, so the whole poll fails and the last values stay.
                raise BrokerUnavailable(f"{name}: {trouble}")
            found[name] = sorted(topic.partitions)
        return found

    def _watermarks(self, tps: list[TP]) -> dict[TP, tuple[int, int]]:
        # One consumer query per partition (low and high together), as topics/admin.py does.
        # High watermark = log end offset, as kafka-consumer-groups reads it (no transactions).
        marks: dict[TP, tuple[int, int]] = {}
        try:
            for t, p in tps:
                low, high = self._sampler.get_watermark_offsets(
                    TopicPartition(t, p), timeout=self.timeout_s, cached=False
                )
                marks[(t, p)] = (low, high)
        except KafkaException as exc:
            raise BrokerUnavailable(f"cannot read watermarks: {exc}") from exc
        return marks

    def _committed(self, group: str, tps: list[TP]) -> dict[TP, int]:
        request = ConsumerGroupTopicPartitions(group, [TopicPartition(t, p) for t, p in tps])
        futures = self._admin.list_consumer_group_offsets([request], request_timeout=self.timeout_s)
        try:
            answer = futures[group].result(timeout=self.timeout_s)
        except KafkaException as exc:
            raise BrokerUnavailable(f"cannot read offsets of group {group}: {exc}") from exc
        return {
            (tp.topic, tp.partition): tp.offset
            for tp in answer.topic_partitions
            if tp.offset >= 0 and tp.error is None  # -1001: nothing committed
        }

    def _sample(self, ranges: dict[TP, tuple[int, int]], limit: int) -> dict[TP, list[Sampled]]:
        """Up to `limit` records from each range's start (offset order), within the deadline."""
        if not ranges or limit <= 0:
            return {}
        want = {tp: min(limit, end - start) for tp, (start, end) in ranges.items()}
        got: dict[TP, list[Sampled]] = {tp: [] for tp in ranges}
        self._sampler.assign([TopicPartition(t, p, start) for (t, p), (start, _) in ranges.items()])
        try:
            deadline = time.monotonic() + self.timeout_s
            while time.monotonic() < deadline and any(len(got[tp]) < n for tp, n in want.items()):
                for message in self._sampler.consume(500, timeout=0.2):
                    if message.error() is not None:
                        continue
                    tp = (message.topic(), message.partition())
                    offset = message.offset()
                    if (
                        offset is None
                        or tp not in ranges
                        or offset >= ranges[tp][1]
                        or len(got[tp]) >= want[tp]
                    ):
                        continue
                    key = message.key()
                    tenant = tenant_of(key.decode("utf-8", "replace")) if key else None
                    got[tp].append(Sampled(tenant, message.timestamp()[1]))
        finally:
            self._sampler.unassign()
        return got

    def _last_timestamps(
        self, lagging: list[PartitionOffsets], samples: dict[TP, list[Sampled]]
    ) -> dict[TP, int]:
        """Timestamp of the last record (end - 1) of each lagging partition."""
        newest: dict[TP, int] = {}
        fetch: dict[TP, tuple[int, int]] = {}
        for o in lagging:
            tp = (o.topic, o.partition)
            sample = samples.get(tp, [])
            if sample and len(sample) >= o.lag:  # the sample reached the end already
                newest[tp] = sample[-1].timestamp_ms
            else:
                fetch[tp] = (o.end - 1, o.end)
        for tp, records in self._sample(fetch, 1).items():
            if records:
                newest[tp] = records[0].timestamp_ms
        return newest


def read_lag_once(
    settings: Settings,
    groups: Sequence[GroupTopics],
    dlq_topics: Iterable[str] = (),
    *,
    timeout_s: float = 5.0,
) -> LagReport:
    """One read with fresh clients, closed afterwards (blocking: call it in a thread).

    For the gateway's occasional reads (`/v1/admin/kafka/status`, the overview page): no
    client outlives the read, so none is alive across a broker restart, the situation in
    which long-lived clients crashed the lag exporter (see soma/lag_poller.py).
    """
    reader = LagReader(settings, timeout_s=timeout_s)
    try:
        return reader.read(groups, dlq_topics)
    finally:
        reader.close()
