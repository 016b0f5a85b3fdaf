"""The outbox drain's logic: pending rows, what is due, how much to send, backoff, giving up.

A row is one parked write (an `outbox_item`) plus its retry state, kept in the drain flow's
table under the item's record key `tenant/idempotency_key`. Nothing here does I/O or reads a
clock: the flow passes `now_ms`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from processors.backend_policy import BackendHealth, BreakerState, HealthMode
from processors.policies import Backoff
from processors.write_plan import parse_time

ITEM_BACKOFF = Backoff(base_s=1.0, cap_s=60.0)


@dataclass(frozen=True)
class OutboxPolicy:
    """How the drain delivers: upstream's batch and pace, per-item backoff, when to give up."""

    batch_max: int = 25  # one remember_batch (upstream: 25)
    degraded_interval_s: float = 1.0  # degraded: at most one batch a second (upstream)
    batches_per_sweep: int = 40  # normal: then the partition yields to arrivals and the others
    backoff: Backoff = ITEM_BACKOFF  # per item, full jitter
    max_attempts: int = 200  # then dead-lettered: ~3 h of failures at the 60 s cap
    max_age_s: float = 7 * 86400.0  # a write older than this is dead-lettered, not sent

    def __post_init__(self) -> None:
        if not 1 <= self.batch_max <= 25:
            raise ValueError("batch_max must be 1..25 (upstream's remember_batch size)")
        if self.max_attempts < 1 or self.max_age_s <= 0 or self.batches_per_sweep < 1:
            raise ValueError("max_attempts, max_age_s and batches_per_sweep must be positive")


OUTBOX_POLICY_DEFAULT = OutboxPolicy()


class RowSummary(NamedTuple):
    """What the drain keeps in memory per row (the whole row stays in the table)."""

    tenant: str
    source_offset: int  # of the memory.outbox record that parked it: delivery order
    next_attempt_ms: int
    parked_ms: int  # when delivery first failed
    updated_ms: int  # when the row was last written
    attempts: int


def new_row(item: Mapping[str, Any], source: Mapping[str, Any], now_ms: int) -> dict[str, Any]:
    """The row of an outbox item just consumed from `memory.outbox` (`source`: its record's
    topic, partition, offset, timestamp_ms, key and headers)."""
    parked = _ms(item.get("first_failed_at"), now_ms)
    due = _ms(item.get("next_attempt_at"), now_ms)
    return {
        "tenant": item["tenant"],
        "idempotency_key": item["idempotency_key"],
        "item": dict(item),
        "attempts": int(item.get("attempts", 0)),
        "parked_ms": parked,
        "next_attempt_ms": due,
        "updated_ms": now_ms,
        "last_error": item.get("last_error"),
        "source": dict(source),
    }


def summarize(row: Mapping[str, Any]) -> RowSummary:
    return RowSummary(
        tenant=str(row["tenant"]),
        source_offset=int(row["source"]["offset"]),
        next_attempt_ms=int(row["next_attempt_ms"]),
        parked_ms=int(row["parked_ms"]),
        updated_ms=int(row["updated_ms"]),
        attempts=int(row["attempts"]),
    )


def failed(row: Mapping[str, Any], error: str, now_ms: int, delay_s: float) -> dict[str, Any]:
    """The row after one more failed delivery: attempts, next attempt time, last error."""
    return {
        **row,
        "attempts": int(row["attempts"]) + 1,
        "next_attempt_ms": now_ms + int(delay_s * 1000),
        "updated_ms": now_ms,
        "last_error": error[:65536],
    }


def retry_delay(policy: OutboxPolicy, attempts: int, rand: Callable[[], float]) -> float:
    """Seconds before the next try of a row that has now failed `attempts` times."""
    return policy.backoff.delay(max(attempts, 1), rand)


def given_up(policy: OutboxPolicy, row: Mapping[str, Any], now_ms: int) -> str | None:
    """Why a row is dead-lettered instead of tried again, or None to keep trying."""
    if int(row["attempts"]) >= policy.max_attempts:
        return f"undeliverable after {row['attempts']} attempts (limit {policy.max_attempts})"
    if now_ms - int(row["parked_ms"]) > policy.max_age_s * 1000:
        return f"older than {policy.max_age_s:.0f} s (SOMA outbox age limit)"
    return None


class Mode(NamedTuple):
    """How the drain may send right now (upstream's modes, by the backend's health)."""

    name: HealthMode
    batches: int  # batches this sweep may send per partition


def sending_mode(
    health: BackendHealth | None,
    policy: OutboxPolicy,
    last_batch_ms: int | None,
    now_ms: int,
) -> Mode:
    """normal: up to `batches_per_sweep`; degraded: one batch a second; down: none.

    While the breaker is open or half-open one batch a second is still tried (the breaker
    refuses it at once, or lets its one trial through): only a trial can close it again.
    """
    waited = last_batch_ms is None or now_ms - last_batch_ms >= policy.degraded_interval_s * 1000
    if health is not None and health.breaker is not BreakerState.CLOSED:
        return Mode(HealthMode.DOWN, 1 if waited else 0)
    if health is None or health.mode is HealthMode.NORMAL:
        return Mode(HealthMode.NORMAL, policy.batches_per_sweep)
    if health.mode is HealthMode.DOWN:
        return Mode(HealthMode.DOWN, 0)
    return Mode(HealthMode.DEGRADED, 1 if waited else 0)


@dataclass
class FlushRequests:
    """Manual flushes (`soma outbox flush`): rows parked before the request are due at once."""

    by_tenant: dict[str, int] = field(default_factory=dict)  # tenant or "*" -> requested_ms
    lifetime_ms: int = 300_000

    def request(self, tenant: str | None, now_ms: int) -> None:
        self.by_tenant[tenant or "*"] = now_ms

    def covers(self, row: RowSummary, now_ms: int) -> bool:
        for who in (row.tenant, "*"):
            requested = self.by_tenant.get(who)
            if requested is not None and row.updated_ms <= requested <= now_ms:
                return now_ms - requested <= self.lifetime_ms
        return False

    def expire(self, now_ms: int) -> None:
        for who, requested in list(self.by_tenant.items()):
            if now_ms - requested > self.lifetime_ms:
                del self.by_tenant[who]


def due_keys(
    rows: Mapping[str, RowSummary],
    *,
    now_ms: int,
    committed_offset: int,
    flush: FlushRequests,
) -> list[str]:
    """Keys to try now, oldest parked first (the order they reached the outbox).

    Only rows whose source record lies below the committed offset: a row whose record may
    still be delivered again (uncommitted) is not sent, or the redelivery would park a write
    that was already delivered.
    """
    ready = [
        (summary.source_offset, key)
        for key, summary in rows.items()
        if summary.source_offset < committed_offset
        and (summary.next_attempt_ms <= now_ms or flush.covers(summary, now_ms))
    ]
    ready.sort()
    return [key for _, key in ready]


def chunks(keys: list[str], size: int, count: int) -> list[list[str]]:
    """At most `count` consecutive batches of at most `size` keys."""
    return [keys[i : i + size] for i in range(0, min(len(keys), size * count), size)]


@dataclass(frozen=True)
class TenantBacklog:
    pending: int
    oldest_parked_ms: int
    next_attempt_ms: int
    max_attempts: int

    def merged(self, other: TenantBacklog | None) -> TenantBacklog:
        """This backlog and `other` (of the same tenant, e.g. another worker's) as one."""
        if other is None:
            return self
        return TenantBacklog(
            self.pending + other.pending,
            min(self.oldest_parked_ms, other.oldest_parked_ms),
            min(self.next_attempt_ms, other.next_attempt_ms),
            max(self.max_attempts, other.max_attempts),
        )


def backlog_by_tenant(rows: Iterable[RowSummary]) -> dict[str, TenantBacklog]:
    """Pending rows per tenant, the oldest parked time, the earliest next attempt."""
    found: dict[str, TenantBacklog] = {}
    for row in rows:
        one = TenantBacklog(1, row.parked_ms, row.next_attempt_ms, row.attempts)
        found[row.tenant] = one.merged(found.get(row.tenant))
    return found


def _ms(text: object, default: int) -> int:
    moment = parse_time(text)
    return default if moment is None else int(moment.timestamp() * 1000)
