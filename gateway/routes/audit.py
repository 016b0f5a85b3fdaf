"""Admin audit reads (role `admin`, the caller's tenant only): filtered pages and NDJSON export."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from gateway.auth import Principal, require_admin
from gateway.openapi import responses
from schemas import SchemaValidationError
from state.audit.queries import AuditFilter, export_rows, read_page
from state.audit.store import audit_connection
from topics.audit import emit_audit

router = APIRouter(prefix="/v1/admin/audit", tags=["admin"])

NDJSON = "application/x-ndjson"
_ACTION = r"^[a-z][a-z0-9_.:-]{0,127}$"  # the agent_audit schema's rule
_PRINTABLE = r"^[^\x00-\x1f\x7f]+$"


class AuditLink(BaseModel):
    """One audit event and its place in the tenant's hash chain."""

    seq: int = Field(description="Position in the tenant's chain, from 1.")
    hash: str = Field(description="sha256 of prev_hash, a newline and the canonical event.")
    prev_hash: str = Field(description="hash of the link before (64 zeros for the first).")
    event: dict[str, Any] = Field(description="The agent_audit event.")


class AuditPage(BaseModel):
    """A page of the caller's tenant's audit events."""

    tenant: str
    items: list[AuditLink]
    next_cursor: int | None = Field(description="Pass as `cursor` for the next page; null: done.")


def _time_query(description: str) -> Any:
    return Query(None, description=description, max_length=64, json_schema_extra=_DATE_TIME)


_DATE_TIME = {"format": "date-time"}


def audit_filter(
    action: str | None = Query(None, max_length=128, pattern=_ACTION),
    actor: str | None = Query(None, min_length=1, max_length=256, pattern=_PRINTABLE),
    decision: Literal["allow", "deny", "n/a"] | None = Query(None),
    since: str | None = _time_query("occurred_at at or after this RFC 3339 time"),
    until: str | None = _time_query("occurred_at before this RFC 3339 time"),
) -> AuditFilter:
    """FastAPI dependency: the filters every audit read takes."""
    return AuditFilter(action, actor, decision, _utc(since, "since"), _utc(until, "until"))


def _utc(text: str | None, name: str) -> datetime | None:
    """An RFC 3339 date-time with its offset, in UTC; 422 for anything else.

    Parsed here rather than by pydantic, which also takes numbers as unix times: the
    documented contract is `format: date-time`.
    """
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        if moment.tzinfo is None or "T" not in text.upper():
            raise ValueError("no UTC offset")
        return moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise SchemaValidationError(
            schema_id="request",
            field=f"/query/{name}",
            rule="format",
            message=f"{name} must be an RFC 3339 date-time with an offset, e.g. "
            "2025-03-14T09:26:53Z",
        ) from None


@router.get(
    "",
    summary="Audit events of the caller's tenant, filtered, in pages",
    response_model=AuditPage,
    responses=responses(401, 403, 422, 503),
)
async def list_audit(
    request: Request,
    principal: Principal = Depends(require_admin),
    filters: AuditFilter = Depends(audit_filter),
    limit: int = Query(50, ge=1, le=500),
    cursor: int | None = Query(None, ge=0, le=2**63 - 1, description="next_cursor of a page"),
    order: Literal["asc", "desc"] = Query("desc", description="desc: newest first"),
) -> AuditPage:
    """The tenant comes from the token: an admin of tenant T reads T's chain only."""
    async with audit_connection(request.app.state.settings.postgres_dsn) as conn:
        rows, next_cursor = await read_page(
            conn, principal.tenant, filters, limit=limit, after=cursor, descending=order == "desc"
        )
    items = [AuditLink(**row) for row in rows]
    return AuditPage(tenant=principal.tenant, items=items, next_cursor=next_cursor)


@router.get(
    "/export",
    summary="Every audit event of the caller's tenant as NDJSON, streamed in chain order",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "One AuditLink JSON object per line, in chain order.",
            "content": {NDJSON: {"schema": {"type": "string"}}},
        },
        **responses(401, 403, 422, 503),
    },
)
async def export_audit(
    request: Request,
    principal: Principal = Depends(require_admin),
    filters: AuditFilter = Depends(audit_filter),
) -> StreamingResponse:
    """Streamed from a server-side cursor: memory stays flat however long the chain is.

    Audited (`audit.export`) before the first line is sent.
    """
    stack = AsyncExitStack()
    conn = await stack.enter_async_context(
        audit_connection(request.app.state.settings.postgres_dsn)
    )
    try:
        await emit_audit(
            request.app.state.producer,
            principal.subject,
            principal.tenant,
            "audit.export",
            f"audit:{principal.tenant}",
            "ok",
            request.state.request_id,
            request.state.traceparent,
            details={k: str(v) for k, v in vars(filters).items() if v is not None},
        )
    except BaseException:
        await stack.aclose()
        raise

    async def lines() -> AsyncIterator[bytes]:
        async with stack:  # the connection lives as long as the stream
            async for row in export_rows(conn, principal.tenant, filters):
                yield orjson.dumps(row) + b"\n"

    return StreamingResponse(lines(), media_type=NDJSON)
