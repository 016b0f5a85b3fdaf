"""Measure replication lag from the broker: watermarks, the group's commits, pending records.

Every `interval_s` a thread reads each memory.wal partition's high watermark, the offsets the
replication group committed, and the records written past what the index already holds (each
record is scanned once); the event loop then folds that into the `PendingIndex`, which the
flow's handler also advances as it replicates. Kafka I/O stays in the thread, the index on the
loop, so neither needs a lock.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from confluent_kafka import OFFSET_INVALID, Consumer, KafkaError, TopicPartition

from processors.keys import SEPARATOR
from processors.replication_lag import Lag, LagStatus, LagThresholds, PendingIndex
from soma.settings import Settings
from topics.consumers import consumer_queue_bounds

log = logging.getLogger(__name__)
SCAN_BUDGET_S = 0.5  # one probe reads pending records at most this long


@dataclass
class BrokerView:
    """What one probe read from the broker."""

    highs: dict[int, int] = field(default_factory=dict)
    committed: dict[int, int] = field(default_factory=dict)
    scanned: dict[int, list[tuple[int, str, int]]] = field(default_factory=dict)
    complete: dict[int, int] = field(default_factory=dict)  # partition -> scanned up to high


@dataclass(frozen=True)
class LagReport:
    """The last probe's answer, per partition and per tenant."""

    partitions: dict[int, Lag]
    tenants: dict[str, Lag]
    status: LagStatus
    probed_at: float

    @property
    def seconds(self) -> float:
        return max((lag.seconds for lag in self.partitions.values()), default=0.0)

    @property
    def offsets(self) -> int:
        return sum(lag.offsets for lag in self.partitions.values())


class BrokerReader:
    """The probe's Kafka side (runs in a thread): one consumer that never joins the group."""

    def __init__(self, settings: Settings, topic: str, group: str) -> None:
        self.topic = topic
        # group.id is the flow's group so `committed` reads its offsets; the consumer only
        # assigns partitions and never commits, so it never touches the group.
        self._consumer = Consumer(
            {
                "bootstrap.servers": settings.kafka_bootstrap,
                "group.id": group,
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "socket.connection.setup.timeout.ms": 3000,
                **consumer_queue_bounds(settings),
            }
        )
        self._lock = threading.Lock()  # close() must not run under a read still in its thread

    def close(self) -> None:
        with self._lock:
            self._consumer.close()

    def read(
        self, starts: dict[int, int], rooms: dict[int, int], default_room: int, timeout_s: float
    ) -> BrokerView:
        """Watermarks, commits, and the records from `starts` (at most `rooms` per partition)."""
        with self._lock:
            return self._read(starts, rooms, default_room, timeout_s)

    def _read(
        self, starts: dict[int, int], rooms: dict[int, int], default_room: int, timeout_s: float
    ) -> BrokerView:
        view = BrokerView()
        metadata = self._consumer.list_topics(self.topic, timeout=timeout_s).topics[self.topic]
        tps = [TopicPartition(self.topic, p) for p in sorted(metadata.partitions)]
        lows = {}
        for tp in tps:
            low, view.highs[tp.partition] = self._consumer.get_watermark_offsets(
                tp, timeout=timeout_s
            )
            lows[tp.partition] = low
        for tp in self._consumer.committed(tps, timeout=timeout_s):
            offset = tp.offset if tp.offset != OFFSET_INVALID and tp.offset >= 0 else None
            view.committed[tp.partition] = lows[tp.partition] if offset is None else offset
        rooms = {p: rooms.get(p, default_room) for p in view.highs}
        self._scan(view, starts, rooms, lows)
        return view

    def _scan(
        self, view: BrokerView, starts: dict[int, int], rooms: dict[int, int], lows: dict[int, int]
    ) -> None:
        todo = {}
        for p, high in view.highs.items():
            start = max(starts.get(p, 0), view.committed[p], lows[p])
            if start >= high:
                view.complete[p] = high
            elif rooms[p] > 0:
                todo[p] = start
                view.scanned[p] = []
        if not todo:
            return
        self._consumer.assign([TopicPartition(self.topic, p, o) for p, o in todo.items()])
        deadline = time.monotonic() + SCAN_BUDGET_S
        try:
            while todo and time.monotonic() < deadline:
                for msg in self._consumer.consume(500, 0.05):
                    part, offset = msg.partition(), msg.offset()
                    if part is None or offset is None or part not in todo:
                        continue
                    p = part
                    error = msg.error()
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            view.complete[p] = view.highs[p]
                            del todo[p]
                        continue
                    found = view.scanned[p]
                    if len(found) < rooms[p]:
                        key = msg.key() or b""
                        tenant = key.split(SEPARATOR.encode(), 1)[0].decode("utf-8", "replace")
                        found.append((offset, tenant, msg.timestamp()[1]))
                    if offset + 1 >= view.highs[p]:
                        view.complete[p] = view.highs[p]
                        del todo[p]
        finally:
            self._consumer.unassign()


class LagProbe:
    """Keeps the pending index current and the last report ready for /health and metrics."""

    def __init__(
        self,
        reader: BrokerReader,
        index: PendingIndex,
        *,
        thresholds: LagThresholds = LagThresholds(),
        interval_s: float = 2.0,
        timeout_s: float = 5.0,
    ) -> None:
        self.reader, self.index, self.thresholds = reader, index, thresholds
        self.interval_s, self.timeout_s = interval_s, timeout_s
        self.last: LagReport | None = None
        self.error: str | None = None
        self._partitions: set[int] = set()

    async def run(self, on_report: Callable[[LagReport], None]) -> None:
        """Probe until cancelled; a failed probe is reported and retried next interval."""
        while True:
            try:
                report = await self.probe_once()
                self.error = None
                on_report(report)
            except Exception as exc:  # a broker outage must not end the probe
                self.error = f"{type(exc).__name__}: {exc}"
                log.warning("replication lag probe failed: %s", self.error)
            await asyncio.sleep(self.interval_s)

    async def probe_once(self) -> LagReport:
        known = self._partitions | set(self.index.positions)
        starts = {p: self.index.scan_from(p) for p in known}
        rooms = {p: self.index.room(p) for p in known}
        view = await asyncio.to_thread(
            self.reader.read, starts, rooms, self.index.per_partition, self.timeout_s
        )
        self._partitions = set(view.highs)
        for p, committed in view.committed.items():
            self.index.advance(p, committed)
        for p, records in view.scanned.items():
            for offset, tenant, timestamp_ms in records:
                self.index.add(p, offset, tenant, timestamp_ms)
        for p, end in view.complete.items():
            self.index.scanned_to(p, end)
        now_ms = int(time.time() * 1000)
        lags = {p: self.index.partition_lag(p, high, now_ms) for p, high in view.highs.items()}
        tenants = self.index.tenant_lags(view.highs, now_ms)
        worst = max((lag.seconds for lag in lags.values()), default=0.0)
        self.last = LagReport(lags, tenants, self.thresholds.classify(worst), time.time())
        return self.last
