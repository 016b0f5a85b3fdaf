"""Retries of backend calls with tenacity: full jitter, Retry-After honoured, injectable sleep."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from processors.backend_policy import RetryPolicy, retry_delay
from state.memory.errors import BackendUnavailable

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]
OnRetry = Callable[[BackendUnavailable, float], None]

# Reasons a retry inside the same call cannot fix: our own breaker is open (waiting is the
# breaker's job), the token is refused, the path does not exist, the schema is missing.
NOT_RETRIED = frozenset({"circuit_open", "unauthorized", "not_found", "schema_missing"})


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, BackendUnavailable) and exc.reason not in NOT_RETRIED


async def call_with_retries(
    policy: RetryPolicy,
    attempt: Callable[[], Awaitable[T]],
    *,
    sleep: Sleep = asyncio.sleep,
    rand: Callable[[], float] = random.random,
    on_retry: OnRetry | None = None,
) -> T:
    """Run `attempt` up to `policy.attempts` times while it raises a retryable BackendUnavailable.

    Waits come from processors.backend_policy.retry_delay; the last error is re-raised as is.
    """

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after_s", None)
        delay = retry_delay(policy, state.attempt_number, retry_after, rand)
        if on_retry is not None and isinstance(exc, BackendUnavailable):
            on_retry(exc, delay)
        return delay

    retrying = AsyncRetrying(
        stop=stop_after_attempt(policy.attempts),
        wait=wait,
        retry=retry_if_exception(_retryable),
        sleep=sleep,
        reraise=True,
    )
    async for trial in retrying:
        with trial:
            return await attempt()
    raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover
