"""Lag arithmetic (processors/lag.py): offsets, seconds, tenant shares, bounded tenant series."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from processors.lag import (
    OTHER_TENANTS,
    UNKNOWN_TENANT,
    PartitionOffsets,
    Sampled,
    TenantLag,
    apportion,
    bound_tenants,
    merge_tenant_lags,
    tenant_lag,
    time_lag_seconds,
)

offsets = st.integers(min_value=0, max_value=10**12)
stamps = st.integers(min_value=0, max_value=2 * 10**12)
tenants = st.sampled_from(["acme", "globex", "initech", "umbrella", None])
samples = st.lists(st.builds(Sampled, tenants, stamps), max_size=60)


@given(offsets, offsets, offsets)
def test_lag_is_end_minus_committed_never_negative(low: int, committed: int, end: int) -> None:
    lag = PartitionOffsets("t", 0, low, end, committed).lag
    assert lag == max(0, end - committed)


@given(offsets, offsets)
def test_a_group_without_commit_lags_by_what_the_log_holds(low: int, end: int) -> None:
    part = PartitionOffsets("t", 0, min(low, end), max(low, end), None)
    assert part.position == part.low
    assert part.lag == part.end - part.low


@given(st.one_of(st.none(), stamps), st.one_of(st.none(), stamps), stamps)
def test_no_time_lag_when_caught_up(oldest: int | None, newest: int | None, now: int) -> None:
    assert time_lag_seconds(0, oldest, newest, now) == 0.0


@given(st.integers(1, 10**6), stamps, stamps, stamps, st.integers(0, 10**9))
def test_time_lag_is_the_wait_of_the_oldest_record_and_grows_with_time(
    lag: int, oldest: int, newest: int, now: int, later: int
) -> None:
    seconds = time_lag_seconds(lag, oldest, newest, now)
    assert seconds is not None and seconds >= 0
    assert seconds == max(0.0, (now - min(oldest, newest)) / 1000)
    after = time_lag_seconds(lag, oldest, newest, now + later)
    assert after is not None and after >= seconds


@given(st.integers(1, 10**6), stamps, stamps)
def test_time_lag_from_the_newest_record_alone_is_a_lower_bound(
    lag: int, newest: int, now: int
) -> None:
    assert time_lag_seconds(lag, None, newest, now) == max(0.0, (now - newest) / 1000)
    assert time_lag_seconds(lag, None, None, now) is None


def test_skewed_clock_never_makes_the_oldest_record_newer_than_the_newest() -> None:
    # The committed record claims to be from the future (producer clock ahead).
    assert time_lag_seconds(5, oldest_ms=90_000, newest_ms=60_000, now_ms=70_000) == 10.0


@given(st.integers(0, 10**6), st.dictionaries(st.text(min_size=1), st.integers(0, 1000)))
def test_apportion_adds_up_and_follows_the_weights(total: int, weights: dict[str, int]) -> None:
    shares = apportion(total, weights)
    if sum(weights.values()) == 0 or total == 0:
        assert shares == {}
        return
    assert sum(shares.values()) == total
    for name, share in shares.items():
        exact = total * weights[name] / sum(weights.values())
        assert abs(share - exact) < 1  # within one unit of the proportional share


@given(st.integers(1, 500), samples)
def test_tenant_lags_add_up_to_the_partition_lag(lag: int, sample: list[Sampled]) -> None:
    shares = tenant_lag(lag, sample)
    assert sum(t.offsets for t in shares.values()) == lag
    exact = len(sample) >= lag
    assert all(t.exact == (exact and bool(sample)) for t in shares.values())
    if exact:
        for name, share in shares.items():
            counted = [r for r in sample[:lag] if (r.tenant or UNKNOWN_TENANT) == name]
            assert share.offsets == len(counted)
            assert share.oldest_ms == min(r.timestamp_ms for r in counted)


def test_tenant_lag_scales_a_partial_sample() -> None:
    sample = [Sampled("acme", 10)] * 3 + [Sampled("globex", 5)]
    shares = tenant_lag(100, sample)
    assert shares == {
        "acme": TenantLag(75, 10, False),
        "globex": TenantLag(25, 5, False),
    }


def test_nothing_sampled_is_attributed_to_no_tenant() -> None:
    assert tenant_lag(7, []) == {UNKNOWN_TENANT: TenantLag(7, None, False)}
    assert tenant_lag(0, [Sampled("acme", 1)]) == {}


@given(
    st.lists(
        st.dictionaries(
            tenants.filter(bool),
            st.builds(TenantLag, st.integers(1, 100), st.one_of(st.none(), stamps), st.booleans()),
            max_size=4,
        ),
        max_size=6,
    )
)
def test_merging_partitions_sums_offsets_and_keeps_the_oldest(
    parts: list[dict[str, TenantLag]],
) -> None:
    merged = merge_tenant_lags(parts)
    for name, lag in merged.items():
        mine = [p[name] for p in parts if name in p]
        assert lag.offsets == sum(m.offsets for m in mine)
        known = [m.oldest_ms for m in mine if m.oldest_ms is not None]
        assert lag.oldest_ms == (min(known) if known else None)
        assert lag.exact == all(m.exact for m in mine)


@given(
    st.dictionaries(
        st.text(alphabet="abcdefgh", min_size=1, max_size=4),
        st.builds(TenantLag, st.integers(1, 1000), st.one_of(st.none(), stamps), st.booleans()),
        max_size=30,
    ),
    st.integers(0, 10),
)
def test_tenant_series_are_bounded_and_nothing_is_lost(
    lags: dict[str, TenantLag], limit: int
) -> None:
    bounded = bound_tenants(lags, limit)
    assert len(bounded) <= limit + 1
    assert sum(t.offsets for t in bounded.values()) == sum(t.offsets for t in lags.values())
    kept = [name for name in bounded if name != OTHER_TENANTS]
    dropped = [name for name in lags if name not in bounded]
    if kept and dropped:
        assert min(lags[k].offsets for k in kept) >= max(lags[d].offsets for d in dropped)
