"""The outbox drain's and the back-pressure's pure logic: what is due, how much to send, when
to give up, how backlogs merge, how long a throttled tenant should wait."""

from __future__ import annotations

import pytest

from processors.backend_policy import BackendHealth, BreakerState, HealthMode
from processors.backpressure import BackpressurePolicy, DrainRates, retry_after_s
from processors.outbox import (
    OUTBOX_POLICY_DEFAULT,
    FlushRequests,
    OutboxPolicy,
    RowSummary,
    TenantBacklog,
    backlog_by_tenant,
    chunks,
    due_keys,
    failed,
    given_up,
    sending_mode,
)

NOW = 1_000_000


def row(tenant: str = "t", offset: int = 0, due: int = NOW, updated: int = NOW - 10) -> RowSummary:
    return RowSummary(tenant, offset, due, parked_ms=NOW - 100, updated_ms=updated, attempts=1)


def health(mode: HealthMode, breaker: BreakerState = BreakerState.CLOSED) -> BackendHealth:
    return BackendHealth("postgres", mode, "test", 0.01, breaker)


def test_due_rows_are_committed_ones_whose_time_came_oldest_parked_first() -> None:
    rows = {
        "late": row(offset=5, due=NOW + 1),
        "b": row(offset=3),
        "a": row(offset=1),
        "uncommitted": row(offset=9),
    }
    assert due_keys(rows, now_ms=NOW, committed_offset=9, flush=FlushRequests()) == ["a", "b"]


def test_a_flush_makes_rows_parked_before_it_due_whatever_their_backoff() -> None:
    flush = FlushRequests()
    rows = {"mine": row("t1", due=NOW + 60_000), "other": row("t2", due=NOW + 60_000)}
    flush.request("t1", NOW - 5)
    assert due_keys(rows, now_ms=NOW, committed_offset=99, flush=flush) == ["mine"]
    # A row written after the request (it failed under the flush) waits for its backoff again.
    later = {"mine": row("t1", due=NOW + 60_000, updated=NOW - 1)}
    assert due_keys(later, now_ms=NOW, committed_offset=99, flush=flush) == []
    flush.request(None, NOW)
    assert sorted(due_keys(rows, now_ms=NOW, committed_offset=99, flush=flush)) == [
        "mine",
        "other",
    ]
    flush.expire(NOW + flush.lifetime_ms + 1)
    assert flush.by_tenant == {}


@pytest.mark.parametrize(
    ("state", "last_batch", "expected"),
    [
        (None, None, (HealthMode.NORMAL, OUTBOX_POLICY_DEFAULT.batches_per_sweep)),
        (health(HealthMode.NORMAL), None, (HealthMode.NORMAL, 40)),
        (health(HealthMode.DEGRADED), NOW - 1_000, (HealthMode.DEGRADED, 1)),
        (health(HealthMode.DEGRADED), NOW - 500, (HealthMode.DEGRADED, 0)),  # one a second
        (health(HealthMode.DOWN), None, (HealthMode.DOWN, 0)),  # probe only
        (health(HealthMode.DOWN, BreakerState.OPEN), None, (HealthMode.DOWN, 1)),  # a trial
        (health(HealthMode.DOWN, BreakerState.OPEN), NOW - 100, (HealthMode.DOWN, 0)),
    ],
)
def test_the_mode_decides_how_many_batches_a_sweep_sends(
    state: BackendHealth | None, last_batch: int | None, expected: tuple[HealthMode, int]
) -> None:
    assert tuple(sending_mode(state, OUTBOX_POLICY_DEFAULT, last_batch, NOW)) == expected


def test_a_failed_row_backs_off_and_is_given_up_past_the_limits() -> None:
    policy = OutboxPolicy(max_attempts=3, max_age_s=60)
    start = {"attempts": 1, "parked_ms": NOW - 1_000, "next_attempt_ms": NOW, "updated_ms": 0}
    after = failed(start, "down", NOW, 2.5)
    assert (after["attempts"], after["next_attempt_ms"], after["last_error"]) == (
        2,
        NOW + 2500,
        "down",
    )
    assert given_up(policy, after, NOW) is None
    assert "3 attempts" in str(given_up(policy, failed(after, "down", NOW, 1), NOW))
    assert "older than" in str(given_up(policy, start, NOW + 61_000))


def test_chunks_and_backlogs() -> None:
    assert chunks(list("abcdefg"), 3, 2) == [["a", "b", "c"], ["d", "e", "f"]]
    backlog = backlog_by_tenant([row("t", due=NOW + 5), row("t", due=NOW + 2), row("u")])
    assert backlog["t"] == TenantBacklog(2, NOW - 100, NOW + 2, 1)
    assert backlog["t"].merged(backlog["u"]) == TenantBacklog(3, NOW - 100, NOW, 1)
    assert backlog["u"].merged(None) == backlog["u"]


def test_retry_after_follows_the_drain_rate_within_its_bounds() -> None:
    policy = BackpressurePolicy(tenant_limit=100)
    assert retry_after_s(policy, 180, drain_rate=10.0) == 10  # (180 - 80) / 10
    assert retry_after_s(policy, 180, drain_rate=0.0) == policy.unknown_rate_retry_s
    assert retry_after_s(policy, 10_000, drain_rate=1.0) == policy.max_retry_s
    assert retry_after_s(policy, 81, drain_rate=1_000.0) == policy.min_retry_s


def test_drain_rates_smooth_and_ignore_a_worker_restart() -> None:
    rates = DrainRates(smoothing=0.5)
    rates.observe({"t": 0}, 0.0)
    rates.observe({"t": 20}, 1.0)
    assert rates.rate("t") == 20.0
    rates.observe({"t": 5}, 2.0)  # the worker restarted: its count began again
    assert rates.rate("t") == 10.0
    assert rates.rate("nobody") == 0.0
