"""Consumer lag from committed offsets, watermarks and record timestamps, per partition and tenant.

Pure arithmetic on what `state/lag.py` reads from the broker; documented in
docs/observability.md ("How lag is measured").
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

# Tenant ids match ^[A-Za-z0-9_.:-]{1,64}$, so these label values can never be a real tenant.
UNKNOWN_TENANT = "(unknown)"  # a sampled record without a key, or nothing sampled at all
OTHER_TENANTS = "(other)"  # tenants beyond the series limit, summed (bounded cardinality)


@dataclass(frozen=True)
class PartitionOffsets:
    """One partition as a consumer group sees it."""

    topic: str
    partition: int
    low: int  # first offset still in the log
    end: int  # high watermark: the offset the next record appended will get
    committed: int | None  # the group's committed offset (next record to read); None: never

    @property
    def position(self) -> int:
        """Where the group resumes: its commit, else the low watermark (we reset to earliest)."""
        return self.low if self.committed is None else self.committed

    @property
    def lag(self) -> int:
        """Records appended and not yet committed: `end - committed`, as kafka-consumer-groups."""
        return max(0, self.end - self.position)


@dataclass(frozen=True)
class Sampled:
    """A record read at or after the committed offset: its tenant and timestamp."""

    tenant: str | None  # None when the record has no key
    timestamp_ms: int


def time_lag_seconds(
    lag: int, oldest_ms: int | None, newest_ms: int | None, now_ms: int
) -> float | None:
    """Seconds the oldest unconsumed record has waited; 0 when caught up, None when unknown.

    `oldest_ms` is the timestamp of the record at the committed offset, `newest_ms` that of
    the last record (end - 1). Producer clocks (CreateTime) can disagree, so the oldest is
    never taken as newer than the newest; when only the newest is known (the committed
    record could not be read in time), the answer is a lower bound.
    """
    if lag <= 0:
        return 0.0
    if oldest_ms is None and newest_ms is None:
        return None
    if oldest_ms is None:
        assert newest_ms is not None
        stamp = newest_ms
    elif newest_ms is None:
        stamp = oldest_ms
    else:
        stamp = min(oldest_ms, newest_ms)
    return max(0.0, (now_ms - stamp) / 1000.0)


def apportion(total: int, weights: Mapping[str, int]) -> dict[str, int]:
    """Split `total` over `weights` proportionally, in integers that add up to `total`.

    Largest remainder (Hamilton): each share is floored, then the units left go to the
    largest remainders (ties by name, so the result is deterministic).
    """
    weight_sum = sum(weights.values())
    if total <= 0 or weight_sum <= 0:
        return {}
    shares = {name: total * w // weight_sum for name, w in weights.items()}
    remainders = sorted(weights, key=lambda name: (-(total * weights[name] % weight_sum), name))
    for name in remainders[: total - sum(shares.values())]:
        shares[name] += 1
    return {name: share for name, share in shares.items() if share > 0}


@dataclass(frozen=True)
class TenantLag:
    """A tenant's share of a partition's lag and its oldest unconsumed record seen."""

    offsets: int
    oldest_ms: int | None  # None: none of its records was in the sample
    exact: bool  # True when the sample covered the whole unconsumed range


def tenant_lag(lag: int, sample: Sequence[Sampled]) -> dict[str, TenantLag]:
    """Attribute a partition's lag to tenants from the first unconsumed records.

    `sample` holds the records at `committed, committed+1, ...` in offset order. When it
    covers the whole lag the counts are exact; otherwise each tenant gets its share of the
    sample, scaled to the lag. A tenant's oldest timestamp is exact whenever it appears in
    the sample, because the sample starts at the committed offset.
    """
    if lag <= 0:
        return {}
    covered = sample[:lag]
    if not covered:
        return {UNKNOWN_TENANT: TenantLag(lag, None, False)}
    exact = len(covered) >= lag
    counts = Counter(record.tenant or UNKNOWN_TENANT for record in covered)
    oldest: dict[str, int] = {}
    for record in covered:
        name = record.tenant or UNKNOWN_TENANT
        oldest[name] = min(oldest.get(name, record.timestamp_ms), record.timestamp_ms)
    shares = dict(counts) if exact else apportion(lag, counts)
    return {name: TenantLag(n, oldest.get(name), exact) for name, n in shares.items()}


def merge_tenant_lags(parts: Iterable[Mapping[str, TenantLag]]) -> dict[str, TenantLag]:
    """Sum tenants' lags over partitions; the oldest record is the oldest of any partition."""
    merged: dict[str, TenantLag] = {}
    for part in parts:
        for name, lag in part.items():
            seen = merged.get(name)
            if seen is None:
                merged[name] = lag
                continue
            stamps = [s for s in (seen.oldest_ms, lag.oldest_ms) if s is not None]
            merged[name] = TenantLag(
                seen.offsets + lag.offsets,
                min(stamps) if stamps else None,
                seen.exact and lag.exact,
            )
    return merged


def bound_tenants(lags: Mapping[str, TenantLag], limit: int) -> dict[str, TenantLag]:
    """At most `limit` tenants by lag (ties by name), the rest summed into `(other)`."""
    ranked = sorted(lags, key=lambda name: (-lags[name].offsets, name))
    kept = {name: lags[name] for name in ranked[:limit]}
    rest = [lags[name] for name in ranked[limit:]]
    if rest:
        merged = merge_tenant_lags([{OTHER_TENANTS: lag} for lag in rest])
        kept[OTHER_TENANTS] = merged[OTHER_TENANTS]
    return kept
