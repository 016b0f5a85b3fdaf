"""Health of one memory backend: the breaker around its calls, its fast probe, mode changes."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from processors.backend_policy import (
    BREAKER_UPSTREAM,
    PROBE_DEFAULT,
    BackendHealth,
    BreakerPolicy,
    BreakerState,
    HealthMode,
    ProbePolicy,
    classify_health,
)
from processors.breaker import CircuitBreaker
from soma import metrics
from state.memory.errors import BackendRejected, BackendUnavailable, OperationUnsupported

log = logging.getLogger(__name__)
T = TypeVar("T")
Clock = Callable[[], float]

_MODE_VALUE = {HealthMode.NORMAL: 0, HealthMode.DEGRADED: 1, HealthMode.DOWN: 2}
_BREAKER_VALUE = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}
# Back-pressure, not failure: a service that rate-limits us is up and answering.
NOT_A_FAILURE = frozenset({"rate_limited"})


class HealthMonitor:
    """Guards calls with the breaker, runs the probe, and reports every state change once.

    Each change of breaker state or health mode becomes a metric and exactly one log line.
    """

    def __init__(
        self,
        backend: str,
        *,
        breaker: BreakerPolicy = BREAKER_UPSTREAM,
        probe: ProbePolicy = PROBE_DEFAULT,
        clock: Clock = time.monotonic,
    ) -> None:
        self.backend = backend
        self.probe_policy = probe
        self.breaker = CircuitBreaker(breaker, clock, on_change=self._breaker_changed)
        self.notes: dict[str, str] = {}  # standing remarks for health detail (links kept here)
        self._clock = clock
        self._mode = HealthMode.NORMAL
        self._probe: tuple[bool, float | None, str] | None = None
        metrics.MEMORY_BACKEND_MODE.labels(backend).set(0)
        metrics.MEMORY_BACKEND_BREAKER_STATE.labels(backend).set(0)

    @property
    def mode(self) -> HealthMode:
        return self._mode

    async def call(self, operation: str, attempt: Callable[[], Awaitable[T]]) -> T:
        """One attempt through the breaker; an open breaker refuses at once (`circuit_open`)."""
        if not self.breaker.allow():
            metrics.MEMORY_BACKEND_CALLS.labels(self.backend, operation, "short_circuited").inc()
            raise BackendUnavailable(
                f"{self.backend}: circuit open after repeated failures; "
                f"next try in {self.breaker.retry_after_s():.1f}s",
                backend=self.backend,
                reason="circuit_open",
                retry_after_s=self.breaker.retry_after_s(),
            )
        started = self._clock()
        outcome = "ok"
        try:
            result = await attempt()
        except BackendUnavailable as exc:
            outcome = "unavailable"
            if exc.reason in NOT_A_FAILURE:
                self.breaker.release()
            else:
                self.breaker.record_failure()
            raise
        except BackendRejected:
            outcome = "rejected"
            self.breaker.record_success()  # the service answered: it is alive
            raise
        except OperationUnsupported:
            outcome = "unsupported"
            self.breaker.record_success()
            raise
        except BaseException:
            outcome = "error"
            self.breaker.release()
            raise
        else:
            self.breaker.record_success()
            return result
        finally:
            elapsed = self._clock() - started
            metrics.MEMORY_BACKEND_CALL_SECONDS.labels(self.backend, operation).observe(elapsed)
            metrics.MEMORY_BACKEND_CALLS.labels(self.backend, operation, outcome).inc()
            self._reclassify()

    async def probe(self, check: Callable[[], Awaitable[str]]) -> BackendHealth:
        """Run `check` within the probe timeout; it returns a detail string or raises."""
        started = self._clock()
        try:
            async with asyncio.timeout(self.probe_policy.timeout_s):
                detail = await check()
            self._probe = (True, self._clock() - started, detail)
        except TimeoutError:
            timeout = self.probe_policy.timeout_s
            self._probe = (False, None, f"probe timed out after {timeout:.1f}s")
        except BackendUnavailable as exc:
            self._probe = (False, None, str(exc))
        metrics.MEMORY_BACKEND_CALL_SECONDS.labels(self.backend, "probe").observe(
            self._clock() - started
        )
        self._reclassify()
        return self.snapshot()

    def snapshot(self) -> BackendHealth:
        """The current verdict without probing."""
        ok, latency, detail = self._probe if self._probe else (None, None, "not probed yet")
        parts = [detail]
        if self.breaker.state is not BreakerState.CLOSED:
            parts.append(f"breaker {self.breaker.state.value}")
        parts.extend(self.notes.values())
        return BackendHealth(
            backend=self.backend,
            mode=self._mode,
            detail="; ".join(parts),
            latency_s=latency if ok else None,
            breaker=self.breaker.state,
        )

    def _reclassify(self) -> None:
        ok, latency, _ = self._probe if self._probe else (None, None, "")
        mode = classify_health(
            self.probe_policy,
            breaker=self.breaker.state,
            probe_ok=ok,
            probe_latency_s=latency,
            consecutive_failures=self.breaker.failures,
        )
        if mode is self._mode:
            return
        old, self._mode = self._mode, mode
        metrics.MEMORY_BACKEND_MODE.labels(self.backend).set(_MODE_VALUE[mode])
        metrics.MEMORY_BACKEND_MODE_CHANGES.labels(self.backend, old.value, mode.value).inc()
        log.warning("memory backend %s: %s -> %s", self.backend, old.value, mode.value)

    def _breaker_changed(self, old: BreakerState, new: BreakerState) -> None:
        metrics.MEMORY_BACKEND_BREAKER_STATE.labels(self.backend).set(_BREAKER_VALUE[new])
        metrics.MEMORY_BACKEND_BREAKER_TRANSITIONS.labels(self.backend, old.value, new.value).inc()
        log.warning("memory backend %s: breaker %s -> %s", self.backend, old.value, new.value)
