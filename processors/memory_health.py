"""Memory-plane health classification: thresholds as values, ok | degraded | down, no I/O.

The thresholds are upstream's (WAL lag 10 s / 30 s, outbox pending 50 / 100), taken from the
backend probe policy so there is one place that says them; `GET /v1/health/memory` applies
them to what the gateway could read.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from processors.backend_policy import PROBE_DEFAULT, BreakerState, HealthMode
from processors.replication_lag import LagThresholds


class Health(StrEnum):
    OK = "ok"
    DEGRADED = "degraded"
    DOWN = "down"
    UNKNOWN = "unknown"  # could not be read: counts as degraded overall


_RANK = {Health.OK: 0, Health.UNKNOWN: 1, Health.DEGRADED: 1, Health.DOWN: 2}


@dataclass(frozen=True)
class MemoryHealthThresholds:
    """Where each signal turns degraded and down (a value at the threshold counts)."""

    wal_lag_degraded_s: float = PROBE_DEFAULT.wal_lag_degraded_s  # 10 s upstream
    wal_lag_down_s: float = PROBE_DEFAULT.wal_lag_down_s  # 30 s upstream
    replication_lag_degraded_s: float = LagThresholds().degraded_s  # the replication flow's own
    replication_lag_down_s: float = LagThresholds().down_s
    outbox_degraded: int = PROBE_DEFAULT.outbox_degraded  # 50 pending writes upstream
    outbox_down: int = PROBE_DEFAULT.outbox_down  # 100
    # Dead letters never stop the plane (the rest flows on), so they only ever degrade: an
    # open dead letter is a write someone has to look at.
    dead_letters_degraded: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.wal_lag_degraded_s <= self.wal_lag_down_s:
            raise ValueError("need 0 <= wal_lag_degraded_s <= wal_lag_down_s")
        if not 0 <= self.replication_lag_degraded_s <= self.replication_lag_down_s:
            raise ValueError("need 0 <= replication_lag_degraded_s <= replication_lag_down_s")
        if not 0 <= self.outbox_degraded <= self.outbox_down:
            raise ValueError("need 0 <= outbox_degraded <= outbox_down")
        if self.dead_letters_degraded < 1:
            raise ValueError("dead_letters_degraded must be >= 1")


MEMORY_HEALTH_UPSTREAM = MemoryHealthThresholds()


def _by_threshold(value: float, degraded: float, down: float) -> Health:
    if value >= down:
        return Health.DOWN
    return Health.DEGRADED if value >= degraded else Health.OK


def classify_wal_lag(t: MemoryHealthThresholds, seconds: float) -> Health:
    return _by_threshold(seconds, t.wal_lag_degraded_s, t.wal_lag_down_s)


def classify_replication_lag(t: MemoryHealthThresholds, seconds: float) -> Health:
    return _by_threshold(seconds, t.replication_lag_degraded_s, t.replication_lag_down_s)


def classify_outbox(t: MemoryHealthThresholds, pending: int) -> Health:
    return _by_threshold(pending, t.outbox_degraded, t.outbox_down)


def classify_dead_letters(t: MemoryHealthThresholds, depth: int) -> Health:
    return Health.DEGRADED if depth >= t.dead_letters_degraded else Health.OK


def classify_backend(mode: HealthMode, breaker: BreakerState) -> Health:
    """The memory backend: its own mode, and the breaker (open is down, half-open degraded)."""
    if mode is HealthMode.DOWN or breaker is BreakerState.OPEN:
        return Health.DOWN
    if mode is HealthMode.DEGRADED or breaker is BreakerState.HALF_OPEN:
        return Health.DEGRADED
    return Health.OK


def worst(statuses: list[Health]) -> Health:
    """Overall status: the worst component; an unreadable one counts as degraded."""
    rank = max((_RANK[s] for s in statuses), default=0)
    return (Health.OK, Health.DEGRADED, Health.DOWN)[rank]
