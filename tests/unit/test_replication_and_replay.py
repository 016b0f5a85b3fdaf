"""Pure parts of replication and replay: lag per tenant, WAL to memory write, ranges, the rate."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.memory_keys import MemoryKeyError, MemoryScope, memory_key
from processors.replay import TokenBucket, of_tenant, plan_partition
from processors.replication import payload_hash, replica_write
from processors.replication_lag import LagStatus, LagThresholds, PendingIndex

TENANTS = st.sampled_from(["acme", "globex", "initech"])


@st.composite
def histories(draw: st.DrawFn) -> list[tuple[str, int, Any]]:
    """Interleaved WAL appends, probe scans and replication progress, per partition."""
    ops: list[tuple[str, int, Any]] = []
    ends, clock = dict.fromkeys(range(3), 0), 0
    for _ in range(draw(st.integers(0, 60))):
        p = draw(st.integers(0, 2))
        kind = draw(st.sampled_from(["write", "scan", "advance"]))
        if kind == "write":
            ends[p] += draw(st.integers(1, 3))  # compaction can leave gaps
            clock += draw(st.integers(0, 50))  # record times rise with offsets
            ops.append(("write", p, (ends[p] - 1, draw(TENANTS), clock)))
        else:
            ops.append((kind, p, draw(st.integers(0, ends[p]))))
    return ops + [("scan", p, None) for p in range(3)]


@settings(max_examples=300)
@given(histories(), st.integers(1, 50))
def test_pending_index_counts_exactly_what_is_not_yet_replicated(
    ops: list[tuple[str, int, Any]], room: int
) -> None:
    index = PendingIndex(per_partition=room)
    written: dict[int, list[tuple[int, str, int]]] = {p: [] for p in range(3)}
    position = dict.fromkeys(range(3), 0)
    for kind, p, arg in ops:
        if kind == "write":
            written[p].append(arg)
        elif kind == "scan":  # what the probe does: read on from scan_from while there is room
            for row in written[p]:
                if row[0] >= index.scan_from(p) and not index.add(p, *row):
                    break
        else:
            position[p] = max(position[p], arg)
            index.advance(p, arg)
    now = 20_000
    highs = {p: (written[p][-1][0] + 1 if written[p] else 0) for p in range(3)}
    pending = {p: [r for r in written[p] if r[0] >= position[p]] for p in range(3)}
    lags = index.tenant_lags(highs, now)
    for p in range(3):
        lag = index.partition_lag(p, highs[p], now)
        assert lag.offsets == max(0, highs[p] - position[p])
        if pending[p]:  # the oldest pending record is always indexed: its age is exact
            assert lag.seconds == pytest.approx((now - pending[p][0][2]) / 1000)
            assert lag.truncated == (len(pending[p]) > room)
        else:
            assert lag.seconds == 0.0
    if all(len(rows) <= room for rows in pending.values()):  # nothing left unscanned
        expected: dict[str, tuple[int, int]] = {}
        for _, tenant, ms in itertools.chain(*pending.values()):
            count, oldest = expected.get(tenant, (0, ms))
            expected[tenant] = (count + 1, min(oldest, ms))
        assert {t: (lag.offsets, lag.seconds) for t, lag in lags.items()} == {
            t: (count, (now - oldest) / 1000) for t, (count, oldest) in expected.items()
        }
        assert not any(lag.truncated for lag in lags.values())


def test_lag_thresholds_are_upstreams() -> None:
    thresholds = LagThresholds()
    assert [thresholds.classify(s) for s in (0, 10, 10.5, 30, 31)] == [
        LagStatus.OK,
        LagStatus.OK,
        LagStatus.DEGRADED,
        LagStatus.DEGRADED,
        LagStatus.DOWN,
    ]


def wal(**overrides: Any) -> dict[str, Any]:
    base = {
        "tenant": "acme",
        "idempotency_key": "acme/wm/s1/user/2025-01-01T00:00:00Z/abcdef0123456789",
        "namespace": "wm",
        "payload": {"fact": "tea", "n": 1},
        "event_time": "2025-03-14T09:26:53.100Z",
        "memory_id": None,
        "trace_context": {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
    }
    return {**base, **overrides}


def test_a_wal_record_becomes_the_write_the_primary_stored() -> None:
    write = replica_write(wal(), default_namespace="somastream")
    scope = MemoryScope("acme", "wm")
    assert (
        write.key == memory_key(scope, wal()["idempotency_key"]) and write.value == wal()["payload"]
    )
    assert write.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert write.occurred_at is not None and write.occurred_at.microsecond == 100_000
    # No namespace: the settings' one, as the write path uses.
    assert (
        replica_write(wal(namespace=None), default_namespace="somastream").namespace == "somastream"
    )
    # A memory_id that is the primary's memory key carries the universe.
    stored = memory_key(MemoryScope("acme", "wm", "u7"), wal()["idempotency_key"])
    assert replica_write(wal(memory_id=stored), default_namespace="x").universe == "u7"
    with pytest.raises(MemoryKeyError):
        replica_write(wal(namespace="a/b"), default_namespace="x")
    with pytest.raises(ValueError):
        replica_write(wal(payload={}), default_namespace="x")


@given(st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=6))
def test_payload_hashes_ignore_key_order(payload: dict[str, Any]) -> None:
    reordered = dict(reversed(list(payload.items())))
    assert payload_hash(payload) == payload_hash(reordered)


@given(
    st.integers(0, 1000),
    st.integers(0, 1000),
    st.none() | st.integers(0, 2000),
    st.none() | st.integers(0, 2000),
    st.none() | st.integers(0, 2000),
    st.none() | st.integers(0, 2000),
)
def test_a_planned_range_stays_within_the_watermarks(
    low: int, size: int, fo: int | None, to: int | None, ft: int | None, tt: int | None
) -> None:
    high = low + size
    planned = plan_partition(0, low, high, from_offset=fo, to_offset=to, from_time=ft, to_time=tt)
    assert low <= planned.from_offset <= planned.to_offset <= high
    if fo is not None:
        assert planned.from_offset >= fo or planned.from_offset == planned.to_offset
    if to is not None:
        assert planned.to_offset <= max(to, planned.from_offset)


@settings(max_examples=200)
@given(
    st.floats(1, 10_000),
    st.lists(st.tuples(st.integers(0, 500), st.floats(0, 2)), min_size=1, max_size=40),
)
def test_the_token_bucket_keeps_the_rate(rate: float, takes: list[tuple[int, float]]) -> None:
    now = [0.0]
    bucket = TokenBucket(rate, burst=rate, clock=lambda: now[0])
    taken = 0
    for n, idle in takes:
        delay = bucket.take(n)
        assert delay >= 0
        now[0] += delay  # the caller waits as told before sending
        taken += n
        assert taken <= rate + rate * now[0] + 1e-6 * taken  # burst + rate * elapsed
        now[0] += idle


def test_the_tenant_filter_matches_whole_tenants() -> None:
    assert of_tenant(b"acme/s1", "acme") and of_tenant(b"acme", "acme")
    assert not of_tenant(b"acme2/s1", "acme") and not of_tenant(None, "acme")
    assert of_tenant(None, None)
