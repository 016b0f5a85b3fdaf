"""ASGI middleware: request id and trace span per request, body-size limit, request metrics."""

from __future__ import annotations

import logging
import re
import time
import uuid
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import INTERNAL_ERROR_BODY, PayloadTooLarge
from processors.tracing import parse_traceparent
from soma.metrics import GATEWAY_REJECTED_REQUESTS, GATEWAY_REQUEST_SECONDS, GATEWAY_REQUESTS
from soma.tracing import remote_parent, span_traceparent

log = logging.getLogger(__name__)

# The `request_id` schema rule: it becomes a Kafka header and an event field.
_REQUEST_ID = re.compile(r"[!-~]{1,128}")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


class RequestContextMiddleware:
    """Give every request an id and a trace span, and echo both in the response headers.

    A client's X-Request-Id is kept when it is usable as a Kafka header (printable ASCII);
    otherwise a new one is generated rather than refusing the request. The gateway's span is
    a child of the incoming traceparent, so the records it produces continue the caller's trace.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = _header(scope, b"x-request-id")
        request_id = incoming if incoming and _REQUEST_ID.fullmatch(incoming) else str(uuid.uuid4())
        parent = parse_traceparent(_header(scope, b"traceparent"))
        method = str(scope.get("method", ""))
        current = trace.get_current_span()
        if current.is_recording() and current.get_span_context().is_valid:
            # FastAPI's own request span (FastAPI >= 0.16x records one when a tracer provider
            # is set): the gateway's hop is that span, not a second SERVER span beside it.
            scope_span: AbstractContextManager[Span] = nullcontext(current)
        else:
            scope_span = trace.get_tracer(__name__).start_as_current_span(
                f"{method} {scope.get('path', '')}",
                context=remote_parent(parent),
                kind=SpanKind.SERVER,
                record_exception=False,
            )
        with scope_span as otel_span:
            span = span_traceparent(otel_span, parent)
            otel_span.set_attribute("http.request.method", method)
            otel_span.set_attribute("url.path", str(scope.get("path", "")))
            otel_span.set_attribute("soma.request_id", request_id)
            state: dict[str, Any] = scope.setdefault("state", {})
            state["request_id"] = request_id
            state["traceparent"] = span.header()

            async def send_with_ids(message: Message) -> None:
                if message["type"] == "http.response.start":
                    otel_span.set_attribute("http.response.status_code", message["status"])
                    headers = list(message.get("headers", []))
                    headers.append((b"x-request-id", request_id.encode()))
                    headers.append((b"traceparent", span.header().encode()))
                    message = {**message, "headers": headers}
                await send(message)

            await self.app(scope, receive, send_with_ids)


class BodyLimitMiddleware:
    """Refuse bodies over `max_bytes` with 413: by Content-Length up front, else while streaming.

    Counting the streamed bytes matters because chunked requests carry no Content-Length and a
    client can lie in it; the body is never buffered beyond the limit.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        # A malformed Content-Length never gets here: the HTTP server refuses it with 400.
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._respond(scope, receive, send, self._too_large(declared))
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # An HTTPException, so FastAPI re-raises it from its body reader untouched.
                    raise self._too_large(f"more than {received}")
            return message

        response_started = False

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            response_started = response_started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except PayloadTooLarge as exc:
            # Reached only when the body was read outside a route's exception handling.
            if response_started:
                raise
            await self._respond(scope, receive, send, exc)

    def _too_large(self, size: str) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"request body is {size} bytes; the limit is {self.max_bytes} (SOMA_MAX_BODY_BYTES)",
            limit_bytes=self.max_bytes,
        )

    async def _respond(
        self, scope: Scope, receive: Receive, send: Send, exc: PayloadTooLarge
    ) -> None:
        body = exc.body()
        request_id = scope.get("state", {}).get("request_id")
        if request_id:
            body["request_id"] = request_id
        GATEWAY_REJECTED_REQUESTS.labels(reason=exc.code).inc()
        await JSONResponse(body, status_code=exc.status_code)(scope, receive, send)


class UnexpectedErrorMiddleware:
    """Answer an exception nothing else handled (a bug) with a JSON 500, and end it there.

    Starlette's last-resort handler answers and then re-raises, so the server drops the
    keep-alive connection without `Connection: close` and the client sees a reset on its next
    request. Here the error is logged with the request id and the request ends normally.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        response_started = False

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            response_started = response_started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            if response_started:
                raise  # half an answer is out: closing the connection is all that is left
            request_id = scope.get("state", {}).get("request_id")
            log.exception(
                "unhandled error in %s %s (request_id %s)",
                scope.get("method"),
                scope.get("path"),
                request_id,
            )
            body = {**INTERNAL_ERROR_BODY, "request_id": request_id}
            await JSONResponse(body, status_code=500)(scope, receive, send)


class MetricsMiddleware:
    """Count and time every request by route template, so raw ids never become label values."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers if the app raises before responding

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            GATEWAY_REQUESTS.labels(route=template, method=method, status=str(status)).inc()
            GATEWAY_REQUEST_SECONDS.labels(route=template, method=method).observe(
                time.perf_counter() - started
            )
