"""The bound on requests the gateway holds at once: beyond it, 503 with Retry-After at once."""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from soma.metrics import GATEWAY_REJECTED_REQUESTS
from soma.queues import QueueMeter

# Probes and scrapes answer even when the gateway is full: they hold no body and produce nothing.
EXEMPT_PATHS = frozenset({"/healthz", "/metrics"})
BUSY_RETRY_AFTER_S = 1  # requests end within the produce timeout; most within milliseconds


class InFlightLimitMiddleware:
    """Hold at most `limit` requests at once (each may buffer a body up to SOMA_MAX_BODY_BYTES).

    The request past the bound is answered 503 `gateway_busy` with `Retry-After`, without
    reading its body: a slow broker makes requests wait up to the produce timeout, and
    without this bound every waiting request would keep its body in memory.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.requests = QueueMeter("gateway_requests", limit)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        if self.requests.depth() >= self.limit:
            await self._busy(scope, receive, send)
            return
        self.requests.add()  # one event loop: no request slips in between check and count
        try:
            await self.app(scope, receive, send)
        finally:
            self.requests.remove()

    async def _busy(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = {
            "error": "gateway_busy",
            "message": f"the gateway holds {self.limit} requests already "
            "(SOMA_GATEWAY_MAX_IN_FLIGHT); retry shortly",
            "retry_after_s": BUSY_RETRY_AFTER_S,
        }
        request_id = scope.get("state", {}).get("request_id")
        if request_id:
            body["request_id"] = request_id
        GATEWAY_REJECTED_REQUESTS.labels(reason="gateway_busy").inc()
        response = JSONResponse(
            body, status_code=503, headers={"Retry-After": str(BUSY_RETRY_AFTER_S)}
        )
        await response(scope, receive, send)
