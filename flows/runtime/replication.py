"""The replication flow's resources: the replica backend, the lag probe, metrics and health."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from flows.runtime.lag_probe import BrokerReader, LagProbe, LagReport
from flows.spec import current_worker
from processors.backend_policy import BackendHealth, HealthMode
from processors.intake import Event
from processors.memory import RememberResult
from processors.replication_lag import LagStatus, PendingIndex
from soma import metrics
from soma.settings import Settings
from state.memory.backend import MemoryBackend
from state.memory.replica import replica_backend
from topics.registry import TopicRegistry

FORGET_AFTER = 150  # probes (5 min at 2 s) a caught-up tenant keeps its zero-valued series
TOP_TENANTS = 20  # tenants listed on /health (all of them are in the metrics)
_RANK = {LagStatus.OK: 0, LagStatus.DEGRADED: 1, LagStatus.DOWN: 2}


@dataclass
class Replication:
    """What the handler writes through and what /health and /metrics read."""

    replica: MemoryBackend
    index: PendingIndex
    probe: LagProbe | None = None
    replica_health: BackendHealth | None = None
    _idle: dict[str, int] = field(default_factory=dict)  # tenant -> probes at zero lag

    def replicated(self, events: Sequence[Event], results: Sequence[RememberResult]) -> None:
        """Advance the index past `events` and count what the replica already had."""
        ends: dict[int, int] = {}
        last: dict[str, int] = {}
        for event in events:
            ends[event.partition] = max(ends.get(event.partition, 0), event.offset + 1)
            last[event.tenant] = max(last.get(event.tenant, 0), event.record.timestamp_ms)
        for partition, end in ends.items():
            self.index.advance(partition, end)
        for tenant, timestamp_ms in last.items():
            metrics.REPLICATION_LAST_REPLICATED.labels(tenant).set(timestamp_ms / 1000)
        present = sum(1 for r in results if r.deduplicated)
        metrics.REPLICATION_RECORDS.labels("stored").inc(len(results) - present)
        metrics.REPLICATION_RECORDS.labels("present").inc(present)

    def export(self, report: LagReport) -> None:
        """Publish one probe's lag as metrics; caught-up tenants read 0, then are forgotten."""
        for partition, lag in report.partitions.items():
            metrics.REPLICATION_PARTITION_LAG_OFFSETS.labels(str(partition)).set(lag.offsets)
            metrics.REPLICATION_PARTITION_LAG_SECONDS.labels(str(partition)).set(lag.seconds)
        for tenant, lag in report.tenants.items():
            metrics.REPLICATION_LAG_OFFSETS.labels(tenant).set(lag.offsets)
            metrics.REPLICATION_LAG_SECONDS.labels(tenant).set(lag.seconds)
            self._idle[tenant] = 0
        for tenant in [t for t in self._idle if t not in report.tenants]:
            self._idle[tenant] += 1
            metrics.REPLICATION_LAG_OFFSETS.labels(tenant).set(0)
            metrics.REPLICATION_LAG_SECONDS.labels(tenant).set(0)
            if self._idle[tenant] > FORGET_AFTER:
                del self._idle[tenant]
                for gauge in (metrics.REPLICATION_LAG_OFFSETS, metrics.REPLICATION_LAG_SECONDS):
                    gauge.remove(tenant)
        truncated = any(lag.truncated for lag in report.partitions.values())
        metrics.REPLICATION_LAG_TRUNCATED.set(1 if truncated else 0)

    async def health(self) -> Mapping[str, Any]:
        """Lag status (thresholds 10 s / 30 s) and the replica's mode; the worse one wins."""
        try:
            self.replica_health = await self.replica.health()
        except Exception as exc:  # the page reports a broken probe, it does not fail with it
            self.replica_health = BackendHealth(
                self.replica.name, HealthMode.DOWN, f"probe failed: {exc!r}", None
            )
        replica_status = {
            HealthMode.NORMAL: LagStatus.OK,
            HealthMode.DEGRADED: LagStatus.DEGRADED,
            HealthMode.DOWN: LagStatus.DOWN,
        }[self.replica_health.mode]
        report = self.probe.last if self.probe else None
        lag_status = report.status if report else LagStatus.DEGRADED  # not measured yet
        if self.probe and self.probe.error:
            lag_status = max(lag_status, LagStatus.DEGRADED, key=_RANK.__getitem__)
        status = max(lag_status, replica_status, key=_RANK.__getitem__)
        return {
            "status": status.value,
            "lag": _lag_body(report, self.probe.error if self.probe else None),
            "replica": {
                "backend": self.replica.name,
                "mode": self.replica_health.mode.value,
                "detail": self.replica_health.detail,
            },
        }


def _lag_body(report: LagReport | None, error: str | None) -> dict[str, Any]:
    if report is None:
        return {"status": "unknown", "error": error}
    tenants = sorted(report.tenants.items(), key=lambda item: -item[1].seconds)[:TOP_TENANTS]
    return {
        "status": report.status.value,
        "seconds": round(report.seconds, 3),
        "offsets": report.offsets,
        "truncated": any(lag.truncated for lag in report.partitions.values()),
        "partitions": {
            str(p): {"offsets": lag.offsets, "seconds": round(lag.seconds, 3)}
            for p, lag in sorted(report.partitions.items())
        },
        "tenants": {
            t: {"offsets": lag.offsets, "seconds": round(lag.seconds, 3)} for t, lag in tenants
        },
        "probed_at": report.probed_at,
        "error": error,
    }


@asynccontextmanager
async def open_replication(settings: Settings) -> AsyncIterator[Replication]:
    """Open the replica (lazily connecting) and run the lag probe while the worker runs."""
    replica = replica_backend(settings)
    replication = Replication(replica, PendingIndex())
    reader = BrokerReader(
        settings,
        TopicRegistry(settings.topic_prefix).get("memory.wal").name,
        current_worker.get().app_id,
    )
    replication.probe = LagProbe(reader, replication.index)
    task = asyncio.create_task(replication.probe.run(replication.export), name="replication-lag")
    try:
        yield replication
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await asyncio.to_thread(reader.close)
        await replica.aclose()
