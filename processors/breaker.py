"""A circuit breaker as a small state machine over an injected clock (closed → open → half-open).

Why not pybreaker or aiobreaker: pybreaker's async path (`call_async`) is built on Tornado's
`gen.coroutine`, not asyncio; aiobreaker (last release 2021) reads the wall clock itself
(`datetime.utcnow()` to open, `datetime.now()` to report reopen time, so the two disagree off
UTC), has no clock to inject, and lets every concurrent call through while half-open. The
machine below is pure: the caller asks `allow()`, then reports the outcome, and reads time
only through `clock`, so half-open after the reset time is tested without sleeping.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from processors.backend_policy import BreakerPolicy, BreakerState

Clock = Callable[[], float]
Listener = Callable[[BreakerState, BreakerState], None]


@dataclass
class CircuitBreaker:
    """Runtime state of one breaker; its policy is a separate frozen value."""

    policy: BreakerPolicy
    clock: Clock
    on_change: Listener | None = None
    state: BreakerState = BreakerState.CLOSED
    failures: int = 0  # consecutive failures while closed
    opened_at: float | None = None
    _trials: int = field(default=0, repr=False)  # trial calls in flight while half-open

    def allow(self) -> bool:
        """May a call go out now? Moves open → half-open once the reset time has passed."""
        if self.state is BreakerState.OPEN:
            assert self.opened_at is not None
            if self.clock() - self.opened_at < self.policy.reset_timeout_s:
                return False
            self._move(BreakerState.HALF_OPEN)
        if self.state is BreakerState.HALF_OPEN:
            if self._trials >= self.policy.half_open_max_calls:
                return False
            self._trials += 1
        return True

    def retry_after_s(self) -> float:
        """Seconds until the breaker lets a trial call through (0 when it would now)."""
        if self.state is not BreakerState.OPEN or self.opened_at is None:
            return 0.0
        return max(0.0, self.policy.reset_timeout_s - (self.clock() - self.opened_at))

    def record_success(self) -> None:
        self.failures = 0
        if self.state is not BreakerState.CLOSED:
            self._move(BreakerState.CLOSED)

    def record_failure(self) -> None:
        if self.state is BreakerState.HALF_OPEN:
            self._open()  # the trial failed: back to open for a full reset period
            return
        if self.state is BreakerState.OPEN:
            return  # a call that started before the breaker opened; nothing new learned
        self.failures += 1
        if self.failures >= self.policy.failure_threshold:
            self._open()

    def release(self) -> None:
        """A call let through ended with neither verdict (cancelled): free its trial slot."""
        if self.state is BreakerState.HALF_OPEN and self._trials > 0:
            self._trials -= 1

    def _open(self) -> None:
        self.opened_at = self.clock()
        self._move(BreakerState.OPEN)

    def _move(self, new: BreakerState) -> None:
        old, self.state = self.state, new
        self._trials = 0
        if new is not BreakerState.OPEN:
            self.failures = 0  # a fresh count after recovering or while trying
        if new is BreakerState.CLOSED:
            self.opened_at = None
        if self.on_change is not None and old is not new:
            self.on_change(old, new)
