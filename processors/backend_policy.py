"""Memory-backend policies as values: retry/backoff, breaker, probe, and health classification."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from enum import StrEnum


class HealthMode(StrEnum):
    """Upstream's modes: normal; degraded (batch ≤ 25, interval ≥ 1 s); down (probe only)."""

    NORMAL = "normal"
    DEGRADED = "degraded"
    DOWN = "down"


class BreakerState(StrEnum):
    CLOSED = "closed"
    HALF_OPEN = "half_open"
    OPEN = "open"


@dataclass(frozen=True)
class RetryPolicy:
    """How often one backend call is tried and how long to wait between tries.

    Waits are full-jitter exponential (uniform in [0, min(cap, base·2^n)]), unless the service
    said when to come back (Retry-After), which is honoured up to `retry_after_cap_s`.
    """

    attempts: int = 3  # first try + 2 retries: upstream's client default
    base_s: float = 0.2
    cap_s: float = 5.0
    retry_after_cap_s: float = 120.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be >= 1")
        if not 0 < self.base_s <= self.cap_s:
            raise ValueError("need 0 < base_s <= cap_s")
        if self.retry_after_cap_s < 0:
            raise ValueError("retry_after_cap_s must be >= 0")


@dataclass(frozen=True)
class BreakerPolicy:
    """Open after `failure_threshold` consecutive failures; try again after `reset_timeout_s`."""

    failure_threshold: int = 3  # upstream default
    reset_timeout_s: float = 15.0  # upstream default
    half_open_max_calls: int = 1  # trial calls let through while half-open

    def __post_init__(self) -> None:
        if self.failure_threshold < 1 or self.half_open_max_calls < 1:
            raise ValueError("failure_threshold and half_open_max_calls must be >= 1")
        if self.reset_timeout_s <= 0:
            raise ValueError("reset_timeout_s must be > 0")


@dataclass(frozen=True)
class ProbePolicy:
    """The fast health probe and the thresholds that turn its answers into a mode."""

    timeout_s: float = 1.0  # DESIGN: a fast probe, 1 to 1.5 s
    degraded_latency_s: float = 0.5  # a probe slower than this means degraded
    wal_lag_degraded_s: float = 10.0  # upstream thresholds, for flows that pass these inputs
    wal_lag_down_s: float = 30.0
    outbox_degraded: int = 50
    outbox_down: int = 100

    def __post_init__(self) -> None:
        if not 0 < self.timeout_s <= 1.5:
            raise ValueError("timeout_s must be within (0, 1.5] s: the probe must stay fast")
        if not 0 < self.degraded_latency_s <= self.timeout_s:
            raise ValueError("need 0 < degraded_latency_s <= timeout_s")


# Named presets. UPSTREAM mirrors SomaAgent01's client; FAIL_FAST suits a caller with its own
# fallback (the write-through flow sends to the outbox rather than waiting inline).
RETRY_UPSTREAM = RetryPolicy()
RETRY_FAIL_FAST = RetryPolicy(attempts=1)
# A local database: one quick retry covers a pooled connection that died with a server restart.
RETRY_LOCAL = RetryPolicy(attempts=2, base_s=0.05, cap_s=0.25, retry_after_cap_s=1.0)
BREAKER_UPSTREAM = BreakerPolicy()
PROBE_DEFAULT = ProbePolicy()


def backoff_delay(policy: RetryPolicy, retry: int, rand: Callable[[], float]) -> float:
    """Seconds before retry number `retry` (1 = first retry): full jitter, never above cap_s.

    `rand` returns a float in [0, 1) (random.random), injected so tests can pin it.
    """
    if retry < 1:
        raise ValueError("retry counts from 1")
    ceiling = min(policy.cap_s, policy.base_s * 2.0 ** min(retry - 1, 62))
    return ceiling * rand()


def retry_delay(
    policy: RetryPolicy, retry: int, retry_after_s: float | None, rand: Callable[[], float]
) -> float:
    """The service's Retry-After when it gave one (capped), else the jittered backoff."""
    if retry_after_s is not None:
        return min(max(retry_after_s, 0.0), policy.retry_after_cap_s)
    return backoff_delay(policy, retry, rand)


def parse_retry_after(value: str | None, now_epoch_s: float) -> float | None:
    """Seconds a `Retry-After` header asks for (delta-seconds or HTTP-date), None if unusable."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        return None
    return max(0.0, moment.timestamp() - now_epoch_s)


def classify_health(
    policy: ProbePolicy,
    *,
    breaker: BreakerState,
    probe_ok: bool | None,
    probe_latency_s: float | None = None,
    consecutive_failures: int = 0,
    wal_lag_s: float | None = None,
    outbox_pending: int | None = None,
) -> HealthMode:
    """normal | degraded | down from what was last observed; the worst signal wins.

    `probe_ok=None` means not probed yet: that alone is no reason to leave normal.
    """
    if breaker is BreakerState.OPEN or probe_ok is False:
        return HealthMode.DOWN
    if (wal_lag_s is not None and wal_lag_s >= policy.wal_lag_down_s) or (
        outbox_pending is not None and outbox_pending >= policy.outbox_down
    ):
        return HealthMode.DOWN
    degraded = (
        breaker is BreakerState.HALF_OPEN
        or consecutive_failures > 0
        or (probe_latency_s is not None and probe_latency_s >= policy.degraded_latency_s)
        or (wal_lag_s is not None and wal_lag_s >= policy.wal_lag_degraded_s)
        or (outbox_pending is not None and outbox_pending >= policy.outbox_degraded)
    )
    return HealthMode.DEGRADED if degraded else HealthMode.NORMAL


@dataclass(frozen=True)
class BackendHealth:
    """A backend's health answer: the mode, why, and how long the probe took."""

    backend: str
    mode: HealthMode
    detail: str
    latency_s: float | None
    breaker: BreakerState = BreakerState.CLOSED

    @property
    def ok(self) -> bool:
        return self.mode is not HealthMode.DOWN
