"""Replication lag: records written to the WAL but not yet replicated, per partition and tenant.

Lag in seconds is the age of the oldest record not yet replicated (0 when caught up), so it
grows while a replica is down and drops to 0 once the flow has caught up; lag in offsets is
how many records are still to replicate. Both per tenant, which needs the tenant of every
pending record: the index below keeps the oldest pending records of each partition (bounded),
scanned once each as the WAL grows.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import StrEnum


class LagStatus(StrEnum):
    OK = "ok"
    DEGRADED = "degraded"
    DOWN = "down"


@dataclass(frozen=True)
class LagThresholds:
    """Upstream's WAL-lag health thresholds: degraded past 10 s, down past 30 s."""

    degraded_s: float = 10.0
    down_s: float = 30.0

    def classify(self, seconds: float) -> LagStatus:
        if seconds > self.down_s:
            return LagStatus.DOWN
        if seconds > self.degraded_s:
            return LagStatus.DEGRADED
        return LagStatus.OK


@dataclass(frozen=True)
class Lag:
    """Records still to replicate and the age of the oldest of them (seconds)."""

    offsets: int
    seconds: float
    truncated: bool = False  # more pending than the index holds: `offsets` is a lower bound


class PendingIndex:
    """Per partition: the next offset to replicate and the oldest pending (offset, tenant, time).

    `advance` is told what has been replicated, `add` what a scan of the WAL found past that;
    memory stays bounded by `per_partition` entries per partition.
    """

    def __init__(self, per_partition: int = 10_000) -> None:
        if per_partition < 1:
            raise ValueError("per_partition must be >= 1")
        self.per_partition = per_partition
        self.positions: dict[int, int] = {}
        self._scanned: dict[int, int] = {}  # next offset a scan should read
        self._pending: dict[int, deque[tuple[int, str, int]]] = {}

    def advance(self, partition: int, position: int) -> None:
        """Everything below `position` on `partition` is replicated (positions never go back)."""
        if position <= self.positions.get(partition, -1):
            return
        self.positions[partition] = position
        pending = self._pending.setdefault(partition, deque())
        while pending and pending[0][0] < position:
            pending.popleft()
        if self._scanned.get(partition, 0) < position:
            self._scanned[partition] = position

    def scan_from(self, partition: int) -> int:
        """Where the next scan of `partition` starts."""
        return max(self._scanned.get(partition, 0), self.positions.get(partition, 0))

    def room(self, partition: int) -> int:
        """How many more records of `partition` a scan may add."""
        return self.per_partition - len(self._pending.get(partition, ()))

    def add(self, partition: int, offset: int, tenant: str, timestamp_ms: int) -> bool:
        """Record one pending record found by a scan; False when it is not (or no longer) kept."""
        if offset < self.scan_from(partition) or self.room(partition) <= 0:
            return False
        self._pending.setdefault(partition, deque()).append((offset, tenant, timestamp_ms))
        self._scanned[partition] = offset + 1
        return True

    def scanned_to(self, partition: int, end: int) -> None:
        """A scan read everything up to `end` (compaction can leave offsets with no record)."""
        if self.room(partition) > 0 and end > self._scanned.get(partition, 0):
            self._scanned[partition] = end

    def partition_lag(self, partition: int, high: int, now_ms: int) -> Lag:
        """Lag of one partition whose high watermark is `high`."""
        offsets = max(0, high - self.positions.get(partition, 0))
        pending = self._pending.get(partition)
        if offsets == 0 or not pending:
            return Lag(offsets, 0.0)
        seconds = max(0.0, (now_ms - pending[0][2]) / 1000)
        return Lag(offsets, seconds, truncated=self.scan_from(partition) < high)

    def tenant_lags(self, highs: dict[int, int], now_ms: int) -> dict[str, Lag]:
        """Lag of every tenant with a pending record (tenants caught up are absent)."""
        counts: dict[str, int] = {}
        oldest: dict[str, int] = {}
        truncated: set[str] = set()
        for partition, pending in self._pending.items():
            partial = self.scan_from(partition) < highs.get(partition, 0)
            for _, tenant, timestamp_ms in pending:
                counts[tenant] = counts.get(tenant, 0) + 1
                oldest[tenant] = min(oldest.get(tenant, timestamp_ms), timestamp_ms)
                if partial:
                    truncated.add(tenant)
        return {
            tenant: Lag(count, max(0.0, (now_ms - oldest[tenant]) / 1000), tenant in truncated)
            for tenant, count in counts.items()
        }
