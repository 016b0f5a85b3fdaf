"""Failure-handling policies as values: backoff, retry, batching and the dead-letter limit."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff; `full` jitter draws the delay uniformly in [0, ceiling].

    Full jitter (AWS architecture blog, "Exponential Backoff And Jitter") spreads retries of many
    workers hitting the same failed dependency instead of having them retry in lock-step.
    """

    base_s: float = 0.5
    cap_s: float = 30.0
    jitter: Literal["full", "none"] = "full"

    def ceiling(self, attempt: int) -> float:
        """The longest delay before retry number `attempt` (1 = the first retry)."""
        if attempt < 1:
            raise ValueError(f"attempt numbers start at 1, got {attempt}")
        # min() before the power would overflow: 2**1100 is fine for ints but not for floats.
        exponent = min(attempt - 1, 64)
        return min(self.cap_s, self.base_s * (2.0**exponent))

    def delay(self, attempt: int, rand: Callable[[], float]) -> float:
        """Seconds to wait before retry `attempt`; `rand` returns a float in [0, 1)."""
        ceiling = self.ceiling(attempt)
        return ceiling * rand() if self.jitter == "full" else ceiling


@dataclass(frozen=True)
class RetryPolicy:
    """How a transient failure is retried in place; `max_attempts=None` retries until it passes.

    Retrying forever is right for a dependency outage (the partition waits, nothing is lost or
    dead-lettered for a fault that is not the record's); a flow that must not wait sets a bound
    and dead-letters (or diverts) what is still failing after it.
    """

    backoff: Backoff = Backoff()
    max_attempts: int | None = None

    def exhausted(self, attempts: int) -> bool:
        """True once `attempts` tries were made and no further one is allowed."""
        return self.max_attempts is not None and attempts >= self.max_attempts


@dataclass(frozen=True)
class BatchPolicy:
    """How a flow batches its source records, and the largest record it accepts."""

    max_events: int = 500  # per-event Faust agents top out near 5k/s here; batches halve that cost
    within_s: float = 0.05
    max_record_bytes: int = 512 * 1024  # larger values are dead-lettered, not processed


@dataclass(frozen=True)
class DlqLimit:
    """When dead-lettering must stop the flow instead (after Sentry arroyo's `DlqLimit`).

    A bad deploy makes every record fail; without a limit the flow would move the whole topic
    into the DLQ. Past either bound the flow halts and waits for an operator.
    """

    max_consecutive: int = 100  # dead letters in a row
    max_invalid_ratio: float = 0.5  # share of dead letters among the last `window` records
    window: int = 1000
    min_sample: int = 200  # the ratio is judged only once this many records were seen

    def __post_init__(self) -> None:
        if self.max_consecutive < 1 or not 0.0 < self.max_invalid_ratio <= 1.0:
            raise ValueError(f"invalid dead-letter limit: {self}")
        if self.window < 1 or not 1 <= self.min_sample <= self.window:
            raise ValueError(f"invalid dead-letter limit window: {self}")


class DlqLimitState:
    """Runtime counts judged against a `DlqLimit` (kept apart from the frozen policy)."""

    def __init__(self, limit: DlqLimit) -> None:
        self.limit = limit
        self.consecutive = 0
        self._recent: deque[bool] = deque(maxlen=limit.window)  # True = dead-lettered
        self._invalid_in_window = 0

    def record(self, dead_lettered: bool) -> None:
        """Count one processed record, in source order."""
        if len(self._recent) == self._recent.maxlen and self._recent[0]:
            self._invalid_in_window -= 1
        self._recent.append(dead_lettered)
        self._invalid_in_window += dead_lettered
        self.consecutive = self.consecutive + 1 if dead_lettered else 0

    def exceeded(self) -> str | None:
        """Why the limit is exceeded, or None while it is not."""
        if self.consecutive > self.limit.max_consecutive:
            return (
                f"{self.consecutive} consecutive dead letters (limit {self.limit.max_consecutive})"
            )
        seen = len(self._recent)
        if seen >= self.limit.min_sample:
            ratio = self._invalid_in_window / seen
            if ratio > self.limit.max_invalid_ratio:
                return (
                    f"{self._invalid_in_window} of the last {seen} records dead-lettered "
                    f"({ratio:.0%} > {self.limit.max_invalid_ratio:.0%})"
                )
        return None


# Named presets: flows pick one, tests and settings build others.
RETRY_UNTIL_IT_PASSES = RetryPolicy(Backoff(base_s=0.2, cap_s=30.0), max_attempts=None)
BATCH_DEFAULT = BatchPolicy()
DLQ_LIMIT_DEFAULT = DlqLimit()
