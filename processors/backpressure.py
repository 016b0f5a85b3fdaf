"""Back-pressure on memory writes: when a tenant's outbox backlog is too long, and for how long.

Pure: the gateway feeds it the outbox drain's summaries (state/outbox.py) and asks per request.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class BackpressurePolicy:
    """A tenant whose outbox holds more than `tenant_limit` writes gets 429 on memory writes."""

    tenant_limit: int = 1000
    # Retry-After aims to bring the backlog back under this share of the limit.
    resume_share: float = 0.8
    min_retry_s: int = 1
    max_retry_s: int = 60
    unknown_rate_retry_s: int = 30  # nothing drains (the memory service is down): ask for 30 s
    rate_smoothing: float = 0.3  # weight of the newest drain-rate sample (EWMA)

    def __post_init__(self) -> None:
        if self.tenant_limit < 1 or not 0 < self.resume_share <= 1:
            raise ValueError("tenant_limit must be >= 1 and resume_share in (0, 1]")
        if not 1 <= self.min_retry_s <= self.unknown_rate_retry_s <= self.max_retry_s:
            raise ValueError("need 1 <= min_retry_s <= unknown_rate_retry_s <= max_retry_s")


def retry_after_s(policy: BackpressurePolicy, pending: int, drain_rate: float) -> int:
    """Seconds until the tenant's backlog is expected back under the resume level."""
    excess = pending - policy.tenant_limit * policy.resume_share
    if drain_rate <= 0:
        return policy.unknown_rate_retry_s
    seconds = math.ceil(max(excess, 1) / drain_rate)
    return max(policy.min_retry_s, min(policy.max_retry_s, seconds))


@dataclass
class DrainRates:
    """Per-tenant drain rate (writes/s) from successive cumulative delivered counts."""

    smoothing: float = 0.3
    rates: dict[str, float] = field(default_factory=dict)
    _last: dict[str, int] = field(default_factory=dict)
    _last_at: float | None = None

    def observe(self, delivered: Mapping[str, int], at_s: float) -> None:
        if self._last_at is not None and at_s > self._last_at:
            elapsed = at_s - self._last_at
            for tenant in set(delivered) | set(self._last):
                # A worker restart resets its counts: a negative step counts as no progress.
                step = max(0, delivered.get(tenant, 0) - self._last.get(tenant, 0))
                sample = step / elapsed
                old = self.rates.get(tenant)
                self.rates[tenant] = (
                    sample if old is None else old + self.smoothing * (sample - old)
                )
        self._last, self._last_at = dict(delivered), at_s

    def rate(self, tenant: str) -> float:
        return self.rates.get(tenant, 0.0)
