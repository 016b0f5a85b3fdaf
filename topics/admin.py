"""Apply the topic registry to the broker: create what is missing, report drift, never delete."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
)
from confluent_kafka.cimpl import KafkaError

from soma.settings import Settings
from topics.errors import BrokerUnavailable
from topics.registry import TopicSpec


@dataclass
class ApplyReport:
    """What `apply_topics` did and what differs from the registry."""

    created: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    altered: dict[str, list[str]] = field(default_factory=dict)  # topic -> safe configs raised
    drift: dict[str, list[str]] = field(default_factory=dict)  # topic -> what differs

    @property
    def ok(self) -> bool:
        return not self.drift


def admin_client(settings: Settings) -> AdminClient:
    return AdminClient(
        {"bootstrap.servers": settings.kafka_bootstrap, "socket.connection.setup.timeout.ms": 3000}
    )


def _existing_partitions(admin: AdminClient, timeout_s: float) -> dict[str, int]:
    try:
        metadata = admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise BrokerUnavailable(f"cannot read cluster metadata: {exc}") from exc
    return {name: len(t.partitions) for name, t in metadata.topics.items() if not t.error}


def apply_topics(
    settings: Settings, specs: Iterable[TopicSpec], timeout_s: float = 15.0
) -> ApplyReport:
    """Create missing topics with their configs; report partition/config drift of existing ones.

    Drift is reported, not fixed: shrinking partitions is impossible and changing cleanup or
    retention can destroy data, so an operator decides. The one exception is a configuration
    that only lets the topic accept more (`max.message.bytes` raised): it is altered in place.
    """
    admin = admin_client(settings)
    specs = list(specs)
    existing = _existing_partitions(admin, timeout_s)
    report = ApplyReport()
    missing = [s for s in specs if s.name not in existing]
    if missing:
        futures = admin.create_topics(
            [NewTopic(s.name, s.partitions, 1, config=s.configs()) for s in missing],
            request_timeout=timeout_s,
        )
        for name, future in futures.items():
            try:
                future.result(timeout=timeout_s)
                report.created.append(name)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
                report.unchanged.append(name)
    present = [s for s in specs if s.name in existing]
    if present:
        _check_drift(admin, present, existing, report, timeout_s)
    return report


def _check_drift(
    admin: AdminClient,
    specs: list[TopicSpec],
    partitions: dict[str, int],
    report: ApplyReport,
    timeout_s: float,
) -> None:
    resources = [ConfigResource(ConfigResource.Type.TOPIC, s.name) for s in specs]
    described = admin.describe_configs(resources, request_timeout=timeout_s)
    by_name = {s.name: s for s in specs}
    for resource, future in described.items():
        spec = by_name[resource.name]
        configs = future.result(timeout=timeout_s)
        differences, raise_safely = [], {}
        if partitions[spec.name] != spec.partitions:
            differences.append(f"partitions {partitions[spec.name]} != {spec.partitions}")
        for key, wanted in spec.configs().items():
            actual = configs[key].value if key in configs else None
            if actual == wanted:
                continue
            if key in _RAISE_ONLY and actual is not None and int(actual) < int(wanted):
                raise_safely[key] = wanted
            else:
                differences.append(f"{key} {actual} != {wanted}")
        if raise_safely:
            _alter(admin, spec.name, raise_safely, timeout_s)
            report.altered[spec.name] = [f"{k} -> {v}" for k, v in raise_safely.items()]
        if differences:
            report.drift[spec.name] = differences
        elif not raise_safely:
            report.unchanged.append(spec.name)


# Topic configs whose increase loses nothing, so `apply` raises them instead of reporting drift.
_RAISE_ONLY = frozenset({"max.message.bytes"})


def _alter(admin: AdminClient, topic: str, configs: dict[str, str], timeout_s: float) -> None:
    resource = ConfigResource(
        ConfigResource.Type.TOPIC,
        topic,
        incremental_configs=[
            ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)
            for key, value in configs.items()
        ],
    )
    for future in admin.incremental_alter_configs([resource], request_timeout=timeout_s).values():
        future.result(timeout=timeout_s)


def high_watermarks(
    settings: Settings, topics: Iterable[str], timeout_s: float = 10.0
) -> dict[str, dict[int, int]]:
    """Per-partition high watermarks (next offset) of each topic that exists."""
    from confluent_kafka import Consumer  # a metadata-only consumer; it joins no group

    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": "soma-watermarks",
            "enable.auto.commit": False,
        }
    )
    try:
        metadata = consumer.list_topics(timeout=timeout_s)
        result: dict[str, dict[int, int]] = {}
        for name in topics:
            topic = metadata.topics.get(name)
            if topic is None or topic.error:
                continue
            result[name] = {
                p: consumer.get_watermark_offsets(TopicPartition(name, p), timeout=timeout_s)[1]
                for p in sorted(topic.partitions)
            }
        return result
    finally:
        consumer.close()


def delete_topics(settings: Settings, names: Iterable[str], timeout_s: float = 15.0) -> None:
    """Delete topics (test clean-up only; never called by `apply`)."""
    admin = admin_client(settings)
    names = list(names)
    if not names:
        return
    for future in admin.delete_topics(names, request_timeout=timeout_s).values():
        with contextlib.suppress(KafkaException):  # already gone is fine for clean-up
            future.result(timeout=timeout_s)


def partition_counts(
    settings: Settings, topics: Iterable[str], timeout_s: float = 10.0
) -> dict[str, int | None]:
    """Partition count of each topic; None for a topic that does not exist."""
    try:
        metadata = admin_client(settings).list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise BrokerUnavailable(f"cannot read cluster metadata: {exc}") from exc
    counts: dict[str, int | None] = {}
    for name in topics:
        found = metadata.topics.get(name)
        ok = found is not None and found.error is None and bool(found.partitions)
        counts[name] = len(found.partitions) if ok and found is not None else None
    return counts
