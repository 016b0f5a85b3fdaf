"""The memory-plane health thresholds: upstream's values, boundaries inclusive, worst wins."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processors.backend_policy import BreakerState, HealthMode
from processors.memory_health import (
    MEMORY_HEALTH_UPSTREAM as T,
)
from processors.memory_health import (
    Health,
    MemoryHealthThresholds,
    classify_backend,
    classify_dead_letters,
    classify_outbox,
    classify_replication_lag,
    classify_wal_lag,
    worst,
)


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(0.0, Health.OK), (9.99, Health.OK), (10.0, Health.DEGRADED), (29.9, Health.DEGRADED),
     (30.0, Health.DOWN), (3600.0, Health.DOWN)],
)  # fmt: skip
def test_wal_lag_uses_upstreams_10_and_30_seconds(seconds: float, expected: Health) -> None:
    assert classify_wal_lag(T, seconds) is expected
    assert classify_replication_lag(T, seconds) is expected


@pytest.mark.parametrize(
    ("pending", "expected"),
    [(0, Health.OK), (49, Health.OK), (50, Health.DEGRADED), (99, Health.DEGRADED),
     (100, Health.DOWN)],
)  # fmt: skip
def test_outbox_uses_upstreams_50_and_100_writes(pending: int, expected: Health) -> None:
    assert classify_outbox(T, pending) is expected


def test_dead_letters_degrade_but_never_take_the_plane_down() -> None:
    assert classify_dead_letters(T, 0) is Health.OK
    assert classify_dead_letters(T, 1) is Health.DEGRADED
    assert classify_dead_letters(T, 10**9) is Health.DEGRADED


def test_backend_breaker_open_is_down_half_open_degraded() -> None:
    assert classify_backend(HealthMode.NORMAL, BreakerState.CLOSED) is Health.OK
    assert classify_backend(HealthMode.NORMAL, BreakerState.HALF_OPEN) is Health.DEGRADED
    assert classify_backend(HealthMode.NORMAL, BreakerState.OPEN) is Health.DOWN
    assert classify_backend(HealthMode.DEGRADED, BreakerState.CLOSED) is Health.DEGRADED
    assert classify_backend(HealthMode.DOWN, BreakerState.CLOSED) is Health.DOWN


def test_unknown_counts_as_degraded_overall() -> None:
    assert worst([]) is Health.OK
    assert worst([Health.OK, Health.UNKNOWN]) is Health.DEGRADED
    assert worst([Health.UNKNOWN, Health.DOWN]) is Health.DOWN


@given(st.lists(st.sampled_from(list(Health)), min_size=1))
def test_overall_is_never_better_than_any_component(statuses: list[Health]) -> None:
    rank = {Health.OK: 0, Health.UNKNOWN: 1, Health.DEGRADED: 1, Health.DOWN: 2}
    overall = worst(statuses)
    assert overall is not Health.UNKNOWN
    assert all(rank[overall] >= rank[s] for s in statuses)


def test_thresholds_must_be_ordered() -> None:
    with pytest.raises(ValueError):
        MemoryHealthThresholds(wal_lag_degraded_s=30, wal_lag_down_s=10)
    with pytest.raises(ValueError):
        MemoryHealthThresholds(outbox_degraded=101)
