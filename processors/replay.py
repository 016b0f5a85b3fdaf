"""Replay: which offsets of a partition a replay reads, which records it keeps, and its pace."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from processors.keys import SEPARATOR
from processors.tenant_counts import OffsetRange

REPLAY_OF = "replay_of"  # header: the source position a replayed record was copied from
REPLAY_JOB = "replay_job"  # header: the id of the replay that copied it


def plan_partition(
    partition: int,
    low: int,
    high: int,
    *,
    from_offset: int | None = None,
    to_offset: int | None = None,
    from_time: int | None = None,
    to_time: int | None = None,
) -> OffsetRange:
    """Offsets [first, last) of one partition whose watermarks are [low, high).

    `from_time` / `to_time` are the offsets the broker found for the timestamps (the first
    record at or after the time, `high` when there is none); bounds by offset and by time
    combine (the narrower wins). An empty range has first == last.
    """
    first = min(high, max(low, from_offset or 0, from_time if from_time is not None else low))
    last = min(
        high,
        to_offset if to_offset is not None else high,
        to_time if to_time is not None else high,
    )
    return OffsetRange(partition, first, max(first, last))


def of_tenant(key: bytes | None, tenant: str | None) -> bool:
    """Whether a record key belongs to `tenant` (every key is `tenant` or `tenant/...`)."""
    if tenant is None:
        return True
    if key is None:
        return False
    wanted = tenant.encode()
    return key == wanted or key.startswith(wanted + SEPARATOR.encode())


@dataclass
class TokenBucket:
    """At most `rate` events per second on average, bursts up to `burst`; the clock is injected.

    `take(n)` answers how long to wait before `n` more events may go (0 when they may go now)
    and books them, so a caller that waits that long keeps the rate.
    """

    rate: float  # events per second; <= 0 means no limit
    burst: float
    clock: Callable[[], float]
    _tokens: float = 0.0
    _at: float | None = None

    def take(self, n: int) -> float:
        if self.rate <= 0 or n <= 0:
            return 0.0
        now = self.clock()
        if self._at is None:
            self._tokens, self._at = self.burst, now
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        self._tokens -= n
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate


@dataclass
class ReplayTally:
    """What a replay did so far; the sinks and the select step count into it."""

    planned: int | None = None  # records in the planned range (None: unknown, an archive)
    read: int = 0
    selected: int = 0  # read and inside the tenant / time filter
    written: int = 0  # acknowledged by the target (broker ack, backend answer, file)
    present: int = 0  # of `written`, keys the backend already had (idempotent no-ops)
    raw: int = 0  # archive export: values kept as raw bytes (not valid under the schema)
    refused: int = 0  # the target's schema or the backend refused them: not written
    refusals: list[str] | None = None  # `topic:partition:offset reason` of the first few

    def refuse(self, where: str, reason: str, keep: int = 20) -> None:
        self.refused += 1
        if self.refusals is None:
            self.refusals = []
        if len(self.refusals) < keep:
            self.refusals.append(f"{where} {reason}"[:300])
