"""HTTP to SomaBrain: headers, client spans, and its answers mapped to the two failure kinds."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from opentelemetry import trace
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TracerProvider,
)

from processors.backend_policy import parse_retry_after
from processors.tracing import TraceParent, new_traceparent, parse_traceparent
from state.memory.errors import (
    BackendRejected,
    BackendUnavailable,
    MemoryBackendError,
    OperationUnsupported,
)

BACKEND = "somabrain"


@dataclass(frozen=True)
class Reply:
    """A 2xx answer: its JSON body and the request id we sent (or the one it echoed)."""

    body: dict[str, Any]
    request_id: str
    traceparent: str


class SomaBrainTransport:
    """One httpx.AsyncClient for the client's life; every request carries tenant and trace."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None,
        timeout_s: float,
        tracer_provider: TracerProvider | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        # Keep-alive pool sized for a flow's concurrency; a new TLS/TCP handshake per write
        # would cost more than the write.
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
            transport=transport,
        )
        self._tracer = trace.get_tracer(__name__, tracer_provider=tracer_provider)
        self._host = httpx.URL(base_url).host

    async def post(
        self, path: str, body: dict[str, Any], *, tenant: str, traceparent: str | None = None
    ) -> Reply:
        return await self._send("POST", path, body, tenant=tenant, traceparent=traceparent)

    async def get(self, path: str, *, timeout_s: float | None = None) -> httpx.Response:
        """A plain GET for probes: no retries, no mapping; the caller reads the status."""
        timeout = httpx.Timeout(timeout_s) if timeout_s else httpx.USE_CLIENT_DEFAULT
        try:
            return await self._client.get(path, timeout=timeout)
        except httpx.HTTPError as exc:
            raise _transport_error(exc) from exc

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _send(
        self, method: str, path: str, body: dict[str, Any], *, tenant: str, traceparent: str | None
    ) -> Reply:
        request_id = uuid.uuid4().hex
        parent = parse_traceparent(traceparent)
        context = None
        if parent is not None:
            remote = SpanContext(
                int(parent.trace_id, 16),
                int(parent.span_id, 16),
                is_remote=True,
                trace_flags=TraceFlags(int(parent.flags, 16)),
            )
            context = trace.set_span_in_context(NonRecordingSpan(remote))
        name = f"{method} {path}"
        with self._tracer.start_as_current_span(
            name, context=context, kind=SpanKind.CLIENT, record_exception=False
        ) as span:
            header = _traceparent_for(span, parent)
            span.set_attribute("http.request.method", method)
            span.set_attribute("url.path", path)
            span.set_attribute("server.address", self._host or "")
            span.set_attribute("soma.tenant", tenant)
            span.set_attribute("soma.request_id", request_id)
            headers = {
                "X-Tenant-ID": tenant,
                "X-Request-Id": request_id,
                "traceparent": header,
                "content-type": "application/json",
            }
            try:
                response = await self._client.request(
                    method, path, content=orjson.dumps(body), headers=headers
                )
            except httpx.HTTPError as exc:
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                raise _transport_error(exc) from exc
            span.set_attribute("http.response.status_code", response.status_code)
            if response.status_code >= 300:
                error = error_for(response, path)
                span.set_status(Status(StatusCode.ERROR, type(error).__name__))
                raise error
            try:
                parsed = response.json()
            except ValueError as exc:
                raise BackendUnavailable(
                    f"somabrain: {path} answered {response.status_code} with a non-JSON body",
                    backend=BACKEND,
                    reason="bad_response",
                    status=response.status_code,
                ) from exc
            echoed = response.headers.get("X-Request-Id") or request_id
            return Reply(parsed if isinstance(parsed, dict) else {}, echoed, header)


def _traceparent_for(span: Any, parent: TraceParent | None) -> str:
    """The header naming this call's span; a fresh child when no SDK records spans."""
    ctx = span.get_span_context()
    if span.is_recording() and ctx.is_valid:
        return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"
    return (parent.child() if parent else new_traceparent()).header()


def _transport_error(exc: httpx.HTTPError) -> BackendUnavailable:
    reason = "timeout" if isinstance(exc, httpx.TimeoutException) else "connect"
    return BackendUnavailable(
        f"somabrain: {type(exc).__name__}: {exc}", backend=BACKEND, reason=reason
    )


def error_for(response: httpx.Response, path: str) -> MemoryBackendError:
    """What a non-2xx answer means for the write (DESIGN.md, how the real service answers)."""
    status = response.status_code
    retry_after = parse_retry_after(response.headers.get("Retry-After"), time.time())
    body = _json_or_none(response)
    if status == 404 and path.rstrip("/").endswith("/link"):
        # The observed real service has no link API.
        return OperationUnsupported(
            f"somabrain: no {path} (404)", backend=BACKEND, operation="link"
        )
    if status in (400, 413, 422):
        field, reason, index = _validation_detail(body)
        return BackendRejected(
            f"somabrain: {path} refused the write ({status}): {field}: {reason}",
            backend=BACKEND,
            field=field,
            reason=reason,
            index=index,
            status=status,
        )
    if status in (401, 403):
        # The write is fine, our credentials are not: park writes (outbox), do not dead-letter.
        return BackendUnavailable(
            f"somabrain: {status} on {path}: check SOMA_API_TOKEN",
            backend=BACKEND,
            reason="unauthorized",
            status=status,
        )
    if status == 429:
        reason = "rate_limited"
    elif status == 503 and isinstance(body, dict) and body.get("breaker_open"):
        reason = "service_breaker_open"
    elif status == 404:
        reason = "not_found"  # a wrong SOMA_BASE_URL, not a bad write
    else:
        reason = "server_error"
    return BackendUnavailable(
        f"somabrain: {status} on {path} ({reason})",
        backend=BACKEND,
        reason=reason,
        retry_after_s=retry_after,
        status=status,
    )


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _validation_detail(body: Any) -> tuple[str | None, str, int | None]:
    """(field, message, batch index) from `{"detail": [{"type", "loc", "msg"}]}`."""
    detail = body.get("detail") if isinstance(body, dict) else None
    if not isinstance(detail, list) or not detail or not isinstance(detail[0], dict):
        return None, str(detail or "invalid request"), None
    first = detail[0]
    loc = [part for part in first.get("loc", []) if part != "body"]
    index = next((part for part in loc if isinstance(part, int)), None)
    field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
    return field or None, str(first.get("msg", "invalid")), index
