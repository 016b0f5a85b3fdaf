"""Find the worker that actively owns a partition, from its consumer group's assignment."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import ConsumerGroupState, KafkaException
from confluent_kafka.admin import AdminClient

from processors.worker_identity import worker_url
from soma.settings import Settings
from state.errors import StateUnavailable

Clock = Callable[[], float]


@dataclass(frozen=True)
class Assignment:
    """Which worker URL owns each (topic, partition) of a group, as seen at `seen_at`."""

    owners: dict[tuple[str, int], str]
    seen_at: float


class GroupLocator:
    """Reads group assignments with describe_consumer_groups, cached for `ttl_s`.

    Faust's assignor encodes standard consumer-protocol assignments (its own data rides in the
    user-data field), so the admin API decodes them; a worker's client id carries its URL
    (processors/worker_identity.py). Source-topic partitions are only ever assigned to active
    owners: standby replicas are assigned changelog partitions.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        ttl_s: float = 1.0,
        partitions_ttl_s: float = 30.0,
        timeout_s: float = 3.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self._admin = AdminClient(
            {
                "bootstrap.servers": settings.kafka_bootstrap,
                "socket.connection.setup.timeout.ms": 3000,
            }
        )
        self._ttl_s, self._partitions_ttl_s, self._timeout_s = ttl_s, partitions_ttl_s, timeout_s
        self._clock = clock
        self._groups: dict[str, Assignment] = {}
        self._partitions: dict[str, tuple[int, float]] = {}

    async def owner_url(self, group: str, topic: str, partition: int) -> str:
        """Base URL of the member actively assigned `topic[partition]`; StateUnavailable if none."""
        assignment = self._groups.get(group)
        if assignment is None or self._clock() - assignment.seen_at > self._ttl_s:
            assignment = await asyncio.to_thread(self._describe, group)
            self._groups[group] = assignment
        url = assignment.owners.get((topic, partition))
        if url is None:
            raise StateUnavailable(
                f"no worker of group {group!r} owns {topic}[{partition}]",
                reason="no_owner",
                retry_after_s=2,
            )
        return url

    def forget(self, group: str) -> None:
        """Drop the cached assignment (a worker said it is not the owner)."""
        self._groups.pop(group, None)

    async def partitions(self, topic: str) -> int:
        """Partition count of a topic, cached longer: it changes only when an operator adds some."""
        cached = self._partitions.get(topic)
        if cached is not None and self._clock() - cached[1] <= self._partitions_ttl_s:
            return cached[0]
        count = await asyncio.to_thread(self._count_partitions, topic)
        self._partitions[topic] = (count, self._clock())
        return count

    def _count_partitions(self, topic: str) -> int:
        try:
            metadata = self._admin.list_topics(topic=topic, timeout=self._timeout_s)
        except KafkaException as exc:
            raise StateUnavailable(
                f"cannot read metadata of {topic}: {exc}", reason="broker"
            ) from exc
        found = metadata.topics.get(topic)
        if found is None or found.error is not None or not found.partitions:
            raise StateUnavailable(
                f"topic {topic!r} does not exist", reason="no_topic", retry_after_s=5
            )
        return len(found.partitions)

    def _describe(self, group: str) -> Assignment:
        futures = self._admin.describe_consumer_groups([group], request_timeout=self._timeout_s)
        try:
            description = futures[group].result(timeout=self._timeout_s)
        except KafkaException as exc:
            raise StateUnavailable(
                f"cannot describe group {group!r}: {exc}", reason="broker"
            ) from exc
        if description.state != ConsumerGroupState.STABLE:
            # Preparing/completing a rebalance, or no member at all (Empty/Dead).
            raise StateUnavailable(
                f"group {group!r} is {description.state.name}",
                reason="rebalancing",
                retry_after_s=2,
            )
        owners: dict[tuple[str, int], str] = {}
        for member in description.members:
            url = worker_url(member.client_id)
            if url is None or member.assignment is None:
                continue
            for tp in member.assignment.topic_partitions:
                owners[(tp.topic, tp.partition)] = url
        return Assignment(owners=owners, seen_at=self._clock())


_locators: dict[str, GroupLocator] = {}


def locator_for(settings: Settings) -> GroupLocator:
    """One locator (admin client and caches) per bootstrap address, shared by the process."""
    locator = _locators.get(settings.kafka_bootstrap)
    if locator is None:
        locator = _locators[settings.kafka_bootstrap] = GroupLocator(settings)
    return locator
