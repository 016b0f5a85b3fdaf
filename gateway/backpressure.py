"""Per-tenant back-pressure on memory writes: 429 + Retry-After while a tenant's outbox is too long.

A background task reads the outbox drain's backlog (state/outbox.py) every
SOMA_OUTBOX_POLL_INTERVAL_S; requests only look at the last answer, so a write costs no extra
call. When the drain cannot be read the last answer is kept for a while, then dropped: the
gateway does not throttle on what it cannot see (the outbox itself is durable in Kafka).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from fastapi import Depends, Request

from gateway.context import EdgeContext, edge_context
from gateway.errors import GatewayError
from processors.backpressure import BackpressurePolicy, DrainRates, retry_after_s
from soma import metrics
from state.outbox import OutboxSummary, outbox_summary
from state.reads import StateReader

log = logging.getLogger(__name__)

STALE_AFTER_S = 15.0  # a summary older than this is not acted on


class TooManyRequests(GatewayError):
    status, code = 429, "tenant_throttled"


class OutboxBackpressure:
    """The last outbox summary the gateway saw, and the drain rates derived from them."""

    def __init__(self, reader: StateReader, policy: BackpressurePolicy, interval_s: float):
        self.reader, self.policy, self.interval_s = reader, policy, interval_s
        self.rates = DrainRates(policy.rate_smoothing)
        self.summary: OutboxSummary | None = None
        self.seen_at = 0.0
        self._failing = False

    async def poll_forever(self) -> None:
        while True:
            await self.poll_once()
            await asyncio.sleep(self.interval_s)

    async def poll_once(self) -> None:
        try:
            summary = await outbox_summary(self.reader)
        except Exception as exc:  # the drain restarting, moving, or absent: keep serving
            if not self._failing:
                log.warning("outbox backlog unreadable (%s); not throttling on it", exc)
            self._failing = True
            return
        if self._failing:
            log.info("outbox backlog readable again")
        self._failing = False
        now = time.monotonic()
        self.rates.observe(summary.delivered, now)
        self.summary, self.seen_at = summary, now

    def check(self, tenant: str) -> None:
        """Raise TooManyRequests when the tenant's backlog is over the limit."""
        summary = self.summary
        if summary is None or time.monotonic() - self.seen_at > STALE_AFTER_S:
            return
        backlog = summary.backlog(tenant)
        if backlog is None or backlog.pending <= self.policy.tenant_limit:
            return
        retry = retry_after_s(self.policy, backlog.pending, self.rates.rate(tenant))
        metrics.GATEWAY_TENANT_THROTTLED.labels(tenant).inc()
        raise TooManyRequests(
            f"tenant {tenant!r} has {backlog.pending} memory writes waiting for the memory "
            f"service (limit {self.policy.tenant_limit}); retry after {retry} s",
            headers={"Retry-After": str(retry)},
            retry_after_s=retry,
            pending=backlog.pending,
        )


@contextlib.asynccontextmanager
async def running(backpressure: OutboxBackpressure):  # type: ignore[no-untyped-def]
    task = asyncio.create_task(backpressure.poll_forever(), name="outbox-backlog-poll")
    try:
        yield backpressure
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def throttled_edge(
    request: Request, edge: EdgeContext = Depends(edge_context)
) -> EdgeContext:
    """FastAPI dependency of memory-writing routes: the edge context, unless throttled."""
    backpressure: OutboxBackpressure | None = getattr(request.app.state, "backpressure", None)
    if backpressure is not None:
        backpressure.check(edge.principal.tenant)
    return edge
