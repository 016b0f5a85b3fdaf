"""Per-tenant event counts over a bounded offset range, and the `tenant_event_count` record."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from processors.keys import tenant_of


@dataclass(frozen=True)
class OffsetRange:
    """Offsets [from_offset, to_offset) a bounded job reads on one partition."""

    partition: int
    from_offset: int
    to_offset: int

    def __contains__(self, offset: object) -> bool:
        return isinstance(offset, int) and self.from_offset <= offset < self.to_offset

    def to_dict(self) -> dict[str, int]:
        return {
            "partition": self.partition,
            "from_offset": self.from_offset,
            "to_offset": self.to_offset,
        }


@dataclass(frozen=True)
class TenantCount:
    """Events of one tenant seen so far and their event-time span (epoch milliseconds)."""

    count: int
    first_ms: int
    last_ms: int


def tenant_for_key(key: bytes | str) -> str:
    """The tenant of a record key (`tenant/session_id` → `tenant`)."""
    text = key.decode() if isinstance(key, bytes) else key
    return tenant_of(text)


def add_event(acc: TenantCount | None, timestamp_ms: int) -> TenantCount:
    """Count one event of the tenant; its timestamp widens the window."""
    if acc is None:
        return TenantCount(count=1, first_ms=timestamp_ms, last_ms=timestamp_ms)
    return TenantCount(
        count=acc.count + 1,
        first_ms=min(acc.first_ms, timestamp_ms),
        last_ms=max(acc.last_ms, timestamp_ms),
    )


def rfc3339(epoch_ms: int) -> str:
    """`2025-01-31T12:00:00.123Z` for an epoch in milliseconds."""
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


def tenant_event_count(
    tenant: str,
    acc: TenantCount,
    *,
    source_topic: str,
    offsets: Sequence[OffsetRange],
    job_id: str,
    computed_at_ms: int,
) -> dict[str, Any]:
    """The `tenant_event_count` event for one tenant (window end is exclusive, hence +1 ms)."""
    return {
        "tenant": tenant,
        "count": acc.count,
        "source_topic": source_topic,
        "window_start": rfc3339(acc.first_ms),
        "window_end": rfc3339(acc.last_ms + 1),
        "offsets": [r.to_dict() for r in offsets],
        "job_id": job_id,
        "computed_at": rfc3339(computed_at_ms),
    }
