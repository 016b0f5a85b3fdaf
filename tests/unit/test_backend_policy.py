"""Backoff bounds, Retry-After, health classification and the breaker, on an injected clock."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processors.backend_policy import (
    PROBE_DEFAULT,
    BreakerPolicy,
    BreakerState,
    HealthMode,
    ProbePolicy,
    RetryPolicy,
    backoff_delay,
    classify_health,
    parse_retry_after,
    retry_delay,
)
from processors.breaker import CircuitBreaker

unit = st.floats(min_value=0, max_value=1, exclude_max=True)


@given(st.integers(min_value=1, max_value=10_000), unit)
def test_backoff_is_full_jitter_within_the_cap(retry: int, r: float) -> None:
    policy = RetryPolicy(base_s=0.2, cap_s=5.0)
    delay = backoff_delay(policy, retry, lambda: r)
    assert 0 <= delay <= min(5.0, 0.2 * 2 ** min(retry - 1, 62))


@given(st.floats(min_value=0, max_value=1e6), st.integers(min_value=1, max_value=5), unit)
def test_retry_after_is_honoured_up_to_its_cap(after: float, retry: int, r: float) -> None:
    policy = RetryPolicy(retry_after_cap_s=120)
    assert retry_delay(policy, retry, after, lambda: r) == min(after, 120)


def test_retry_after_parses_seconds_and_http_dates() -> None:
    now = datetime(2025, 1, 1, tzinfo=UTC).timestamp()
    assert parse_retry_after("7", now) == 7
    later = format_datetime(datetime(2025, 1, 1, 0, 0, 30, tzinfo=UTC), usegmt=True)
    assert parse_retry_after(later, now) == 30
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


def test_probe_timeout_must_stay_fast() -> None:
    with pytest.raises(ValueError):
        ProbePolicy(timeout_s=3.0)


@pytest.mark.parametrize(
    "kwargs, mode",
    [
        ({"breaker": BreakerState.CLOSED, "probe_ok": True, "probe_latency_s": 0.01}, "normal"),
        ({"breaker": BreakerState.CLOSED, "probe_ok": None}, "normal"),
        ({"breaker": BreakerState.CLOSED, "probe_ok": True, "probe_latency_s": 0.9}, "degraded"),
        ({"breaker": BreakerState.HALF_OPEN, "probe_ok": True}, "degraded"),
        ({"breaker": BreakerState.CLOSED, "probe_ok": True, "consecutive_failures": 1}, "degraded"),
        ({"breaker": BreakerState.OPEN, "probe_ok": True}, "down"),
        ({"breaker": BreakerState.CLOSED, "probe_ok": False}, "down"),
        ({"breaker": BreakerState.CLOSED, "probe_ok": True, "wal_lag_s": 12}, "degraded"),
        ({"breaker": BreakerState.CLOSED, "probe_ok": True, "wal_lag_s": 30}, "down"),
        ({"breaker": BreakerState.CLOSED, "probe_ok": True, "outbox_pending": 50}, "degraded"),
        ({"breaker": BreakerState.CLOSED, "probe_ok": True, "outbox_pending": 100}, "down"),
    ],
)
def test_classify_health(kwargs: dict, mode: str) -> None:  # type: ignore[type-arg]
    assert classify_health(PROBE_DEFAULT, **kwargs) is HealthMode(mode)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_after_threshold_and_half_opens_after_reset() -> None:
    clock, changes = FakeClock(), []
    breaker = CircuitBreaker(
        BreakerPolicy(failure_threshold=3, reset_timeout_s=15),
        clock,
        on_change=lambda old, new: changes.append((old.value, new.value)),
    )
    for _ in range(2):
        assert breaker.allow()
        breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow()
    clock.now += 14.9
    assert not breaker.allow() and breaker.retry_after_s() == pytest.approx(0.1)
    clock.now += 0.1
    assert breaker.allow()  # the one trial call
    assert breaker.state is BreakerState.HALF_OPEN
    assert not breaker.allow()  # a second concurrent call waits for the trial's verdict
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert changes == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


def test_a_failed_trial_reopens_for_a_full_period() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(BreakerPolicy(failure_threshold=1, reset_timeout_s=10), clock)
    breaker.record_failure()
    clock.now += 10
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    assert breaker.retry_after_s() == 10


@given(st.lists(st.sampled_from(["ok", "fail", "tick"]), max_size=60))
def test_breaker_never_opens_below_threshold_consecutive_failures(steps: list[str]) -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(BreakerPolicy(failure_threshold=3, reset_timeout_s=5), clock)
    run = 0
    for step in steps:
        if step == "tick":
            clock.now += 1
            continue
        if not breaker.allow():
            continue
        was = breaker.state
        if step == "ok":
            breaker.record_success()
            run = 0
            assert breaker.state is BreakerState.CLOSED
        else:
            breaker.record_failure()
            run = run + 1 if was is BreakerState.CLOSED else 0
            opened = breaker.state is BreakerState.OPEN
            assert opened == (was is BreakerState.HALF_OPEN or run >= 3)
            if opened:
                run = 0
