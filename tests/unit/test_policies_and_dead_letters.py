"""Failure policies and dead-letter envelopes: bounds, limits, and byte-exact round trips."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processors.dead_letters import (
    DeadLetterReason,
    SourceRecord,
    dead_letter_envelope,
    original_record,
    tenant_of_record,
)
from processors.policies import Backoff, DlqLimit, DlqLimitState, RetryPolicy
from schemas import validate


@given(
    attempt=st.integers(1, 10_000),
    base=st.floats(0.001, 5.0),
    cap=st.floats(0.01, 300.0),
    rand=st.floats(0.0, 0.999999),
)
def test_backoff_stays_within_zero_and_the_capped_ceiling(
    attempt: int, base: float, cap: float, rand: float
) -> None:
    backoff = Backoff(base_s=base, cap_s=cap)
    delay = backoff.delay(attempt, lambda: rand)
    assert 0.0 <= delay <= min(cap, base * 2.0 ** min(attempt - 1, 64)) + 1e-9
    assert Backoff(base_s=base, cap_s=cap, jitter="none").delay(attempt, lambda: 0.0) == (
        backoff.ceiling(attempt)
    )


def test_backoff_doubles_until_the_cap() -> None:
    backoff = Backoff(base_s=0.5, cap_s=3.0, jitter="none")
    assert [backoff.delay(n, lambda: 0.0) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    with pytest.raises(ValueError):
        backoff.ceiling(0)


def test_retry_policy_bounds() -> None:
    assert not RetryPolicy(max_attempts=None).exhausted(10**6)
    assert not RetryPolicy(max_attempts=3).exhausted(2)
    assert RetryPolicy(max_attempts=3).exhausted(3)


def test_dlq_limit_trips_on_consecutive_dead_letters() -> None:
    state = DlqLimitState(DlqLimit(max_consecutive=3, min_sample=10, window=10))
    for dead in (True, True, True, False, True, True, True):
        state.record(dead)
        assert state.exceeded() is None
    state.record(True)
    assert state.exceeded() == "4 consecutive dead letters (limit 3)"


def test_dlq_limit_trips_on_the_ratio_only_after_the_minimum_sample() -> None:
    limit = DlqLimit(max_consecutive=100, max_invalid_ratio=0.5, window=10, min_sample=6)
    state = DlqLimitState(limit)
    for dead in (True, False, True, False, True):
        state.record(dead)
    assert state.exceeded() is None  # 3 of 5: not judged yet
    state.record(True)
    assert state.exceeded() == "4 of the last 6 records dead-lettered (67% > 50%)"


def test_dlq_limit_window_forgets_old_records() -> None:
    state = DlqLimitState(DlqLimit(max_consecutive=100, window=4, min_sample=4))
    for dead in (True, True, False, True):  # 3 of 4
        state.record(dead)
    assert state.exceeded() is not None
    for _ in range(3):
        state.record(False)
    assert state.exceeded() is None  # the window now holds 1 of 4


def test_dlq_limit_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        DlqLimit(max_invalid_ratio=0.0)
    with pytest.raises(ValueError):
        DlqLimit(window=10, min_sample=11)


HEADER_NAMES = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=20)


@given(
    key=st.one_of(st.none(), st.binary(max_size=64)),
    value=st.one_of(st.none(), st.binary(max_size=512)),
    headers=st.lists(st.tuples(HEADER_NAMES, st.one_of(st.none(), st.binary(max_size=32)))),
    offset=st.integers(0, 2**40),
    reason=st.sampled_from(list(DeadLetterReason)),
)
def test_envelopes_validate_and_carry_the_record_byte_for_byte(
    key: bytes | None,
    value: bytes | None,
    headers: list[tuple[str, bytes | None]],
    offset: int,
    reason: DeadLetterReason,
) -> None:
    record = SourceRecord("conversation.inbound", 4, offset, key, value, tuple(headers), 1_700)
    try:
        raise ValueError("boom " * 3)
    except ValueError as error:
        envelope = dead_letter_envelope(
            record,
            flow="session-counts",
            consumer_group="g",
            reason=reason,
            error=error,
            attempts=2,
            failed_at=datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
        )
    validate("dlq_envelope", envelope)  # whatever bytes a foreign producer sent
    assert original_record(envelope) == record
    assert envelope["dlq_id"] == f"conversation.inbound:4:{offset}"
    assert envelope["failed_at"] == "2026-01-02T03:04:05.678Z"
    assert envelope["error_class"] == "builtins.ValueError"
    assert "Traceback" in envelope["stack"] and "boom" in envelope["stack"]


def test_tenant_comes_from_the_key_then_the_header() -> None:
    def record(key: bytes | None, headers: tuple[tuple[str, bytes | None], ...]) -> SourceRecord:
        return SourceRecord("t", 0, 0, key, b"{}", headers, 0)

    assert tenant_of_record(record(b"acme/s1", (("tenant", b"other"),))) == "acme"
    assert tenant_of_record(record(None, (("tenant", b"other"),))) == "other"
    assert tenant_of_record(record(b"\xff\xfe", ())) is None
    assert tenant_of_record(record(b"not a tenant/s1", ())) is None
    assert tenant_of_record(record(None, ())) is None


def test_long_errors_are_cut_to_the_schema_limits() -> None:
    record = SourceRecord("t", 0, 1, b"acme/s", b"x", (), 0)
    envelope = dead_letter_envelope(
        record,
        flow="f",
        consumer_group="g",
        reason=DeadLetterReason.PROCESSING,
        error=RuntimeError("e" * 100_000),
        attempts=1,
        failed_at=datetime.now(UTC),
    )
    validate("dlq_envelope", envelope)
    assert len(envelope["error_message"]) == 65536 and "characters cut" in envelope["error_message"]
    assert base64.b64decode(envelope["original_value"]) == b"x"
