"""Find the worker that actively owns a partition, from its consumer group's assignment.

The group is described with aiokafka's pure-Python admin client. librdkafka's admin client was
used before and aborted the whole gateway process after a broker restart (an assertion in
`describe_consumer_groups`, confluentinc/librdkafka#4605); a Python client can only raise,
and every error here becomes `StateUnavailable` (503 + Retry-After).

After a failure the client is thrown away and a new one is made on a later call, at most once
per `cooldown_s`; calls in between fail fast. So an outage costs 503s while it lasts, and
nothing keeps failing after the broker answers again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

from processors.worker_identity import worker_url
from soma.settings import Settings
from state.errors import StateUnavailable

log = logging.getLogger(__name__)

Clock = Callable[[], float]


@dataclass(frozen=True)
class Assignment:
    """Which worker URL owns each (topic, partition) of a group, as seen at `seen_at`."""

    owners: dict[tuple[str, int], str]
    seen_at: float


class GroupLocator:
    """Reads group assignments (cached `ttl_s`) and partition counts (cached longer)."""

    def __init__(
        self,
        settings: Settings,
        *,
        ttl_s: float = 1.0,
        partitions_ttl_s: float = 30.0,
        timeout_s: float = 2.0,
        cooldown_s: float = 1.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self._bootstrap = settings.kafka_bootstrap
        self._ttl_s, self._partitions_ttl_s = ttl_s, partitions_ttl_s
        self._timeout_s, self._cooldown_s = timeout_s, cooldown_s
        self._clock = clock
        self._admin: AIOKafkaAdminClient | None = None
        self._failed_at: float | None = None
        self._lock = asyncio.Lock()
        self._groups: dict[str, Assignment] = {}
        self._partitions: dict[str, tuple[int, float]] = {}

    async def owner_url(self, group: str, topic: str, partition: int) -> str:
        """Base URL of the member actively assigned `topic[partition]`; StateUnavailable if none."""
        assignment = self._groups.get(group)
        if assignment is None or self._clock() - assignment.seen_at > self._ttl_s:
            assignment = await self._call(self._describe, group)
            self._groups[group] = assignment
        url = assignment.owners.get((topic, partition))
        if url is None:
            raise StateUnavailable(
                f"no worker of group {group!r} owns {topic}[{partition}]",
                reason="no_owner",
                retry_after_s=2,
            )
        return url

    async def members(self, group: str) -> tuple[str, list[str]]:
        """The group's state (`Stable`, `Empty`, `Dead`: never known, ...) and its workers' URLs."""
        result: tuple[str, list[str]] = await self._call(_members_of, group)
        return result

    def forget(self, group: str) -> None:
        """Drop the cached assignment (a worker said it is not the owner)."""
        self._groups.pop(group, None)

    async def partitions(self, topic: str) -> int:
        """Partition count of a topic, cached longer: it changes only when an operator adds some."""
        cached = self._partitions.get(topic)
        if cached is not None and self._clock() - cached[1] <= self._partitions_ttl_s:
            return cached[0]
        count = await self._call(self._count_partitions, topic)
        self._partitions[topic] = (count, self._clock())
        return count

    async def aclose(self) -> None:
        admin, self._admin = self._admin, None
        if admin is not None:
            await _close_quietly(admin)

    # --- one admin call, made safe ------------------------------------------------------------

    async def _call(self, operation: Callable[[AIOKafkaAdminClient, str], Any], arg: str) -> Any:
        if self._failed_at is not None and self._clock() - self._failed_at < self._cooldown_s:
            raise StateUnavailable("the broker did not answer a moment ago", reason="broker")
        try:
            async with asyncio.timeout(self._timeout_s * 2):
                admin = await self._client()
                result = await operation(admin, arg)
        except StateUnavailable:
            raise
        except Exception as exc:  # any client error or timeout: the broker is the cause
            self._failed_at = self._clock()
            await self.aclose()  # a fresh client next time: no state survives a failure
            raise StateUnavailable(
                f"cannot read group state from the broker: {exc!r}", reason="broker"
            ) from exc
        self._failed_at = None
        return result

    async def _client(self) -> AIOKafkaAdminClient:
        async with self._lock:
            if self._admin is None:
                admin = AIOKafkaAdminClient(
                    bootstrap_servers=self._bootstrap,
                    request_timeout_ms=int(self._timeout_s * 1000),
                    client_id="soma-gateway-locator",
                )
                try:
                    await admin.start()
                except BaseException:
                    await _close_quietly(admin)
                    raise
                self._admin = admin
            return self._admin

    async def _count_partitions(self, admin: AIOKafkaAdminClient, topic: str) -> int:
        for found in await admin.describe_topics([topic]):
            if found["topic"] == topic and found["error_code"] == 0 and found["partitions"]:
                return len(found["partitions"])
        raise StateUnavailable(
            f"topic {topic!r} does not exist", reason="no_topic", retry_after_s=5
        )

    async def _describe(self, admin: AIOKafkaAdminClient, group: str) -> Assignment:
        responses = await admin.describe_consumer_groups([group])
        groups = [g for r in responses for g in r.to_object()["groups"] if g["group"] == group]
        if not groups or groups[0]["error_code"] != 0:
            raise StateUnavailable(f"group {group!r} cannot be described", reason="broker")
        described = groups[0]
        if described["state"] != "Stable":
            # Preparing/completing a rebalance, or no member at all (Empty/Dead).
            raise StateUnavailable(
                f"group {group!r} is {described['state']}", reason="rebalancing", retry_after_s=2
            )
        owners: dict[tuple[str, int], str] = {}
        for member in described["members"]:
            url = worker_url(member["client_id"])
            if url is None or not member["member_assignment"]:
                continue
            # Faust's assignor speaks the standard consumer protocol (its own data rides in
            # user_data), and assigns source partitions to active owners only.
            decoded = ConsumerProtocolMemberAssignment.decode(member["member_assignment"])
            for topic, partitions in decoded.assignment:
                for partition in partitions:
                    owners[(topic, partition)] = url
        return Assignment(owners=owners, seen_at=self._clock())


async def _members_of(admin: AIOKafkaAdminClient, group: str) -> tuple[str, list[str]]:
    responses = await admin.describe_consumer_groups([group])
    groups = [g for r in responses for g in r.to_object()["groups"] if g["group"] == group]
    if not groups or groups[0]["error_code"] != 0:
        raise StateUnavailable(f"group {group!r} cannot be described", reason="broker")
    urls = {worker_url(m["client_id"]) for m in groups[0]["members"]}
    return str(groups[0]["state"]), sorted(u for u in urls if u)


async def _close_quietly(admin: AIOKafkaAdminClient) -> None:
    try:
        await asyncio.wait_for(admin.close(), timeout=2.0)
    except Exception as exc:  # closing a client of a dead broker may fail: nothing to do
        log.debug("closing the admin client failed: %r", exc)
