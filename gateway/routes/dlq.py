"""Dead-letter admin API: list, filter, inspect, replay, acknowledge and purge dead letters.

Role `admin` sees its own tenant's dead letters, `platform-admin` everyone's (dead letters that
name no tenant included). Every action is recorded by the index and audited. The upstream
paths (`GET /v1/admin/dlq/{topic}`, `POST /v1/admin/dlq/{topic}/{id}/reprocess`,
`DELETE /v1/admin/dlq/{topic}`) keep working.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Literal, TypeVar

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.auth import ADMIN_ROLE, PLATFORM_ADMIN_ROLE, Principal, require_principal
from gateway.body import read_json
from gateway.errors import Conflict, Forbidden, NotFound
from gateway.openapi import responses
from processors.scan import CURSOR_PATTERN, ScanQuery, decode_cursor
from schemas import SchemaValidationError
from state.dead_letters import DeadLetters, EntryNotFound, ReplayRefused, Scope
from topics.registry import TopicRegistry

router = APIRouter(prefix="/v1/admin/dlq", tags=["dead letters"])

Status = Literal["open", "acked", "replayed", "purged", "all"]
MAX_BULK = 500
# An entry id is `<DLQ record key (<= 512)>#<topic:partition:offset>`, base64url: ~1 KiB at most.
MAX_ID_CHARS = 1100


def dead_letters(request: Request) -> DeadLetters:
    """FastAPI dependency: the process's dead-letter operations (tests override it)."""
    service: DeadLetters = request.app.state.dead_letters
    return service


async def admin_scope(request: Request, principal: Principal = Depends(require_principal)) -> Scope:
    """The caller's scope: a platform admin sees every tenant, an admin its own."""
    request_id = getattr(request.state, "request_id", None)
    if PLATFORM_ADMIN_ROLE in principal.roles:
        return Scope(tenant=None, actor=principal.subject, request_id=request_id)
    if ADMIN_ROLE in principal.roles:
        return Scope(tenant=principal.tenant, actor=principal.subject, request_id=request_id)
    raise Forbidden(f"dead letters need the {ADMIN_ROLE!r} or {PLATFORM_ADMIN_ROLE!r} role")


def public_id(entry_id: str) -> str:
    """The URL-safe id of an entry (its index key, base64url)."""
    return base64.urlsafe_b64encode(entry_id.encode()).decode().rstrip("=")


def entry_id_of(ident: str) -> str:
    """The index key an id names; NotFound for anything `public_id` cannot have made (the
    lenient decoder would drop characters outside the alphabet: `!` decoded to an empty key)."""
    try:
        padded = ident + "=" * (-len(ident) % 4)
        key = base64.b64decode(padded, altchars=b"-_", validate=True).decode()
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise NotFound("not a dead-letter id") from None
    if not key or public_id(key) != ident:
        raise NotFound("not a dead-letter id")
    return key


class Filters(BaseModel):
    """Which dead letters: every field narrows the selection."""

    source_topic: str | None = Field(None, description="Registry name, e.g. conversation.inbound")
    tenant: str | None = Field(None, description="Platform admins only; admins see their own")
    reason: str | None = Field(None, description="not_json, schema, no_key, wrong_partition, ...")
    error_class: str | None = None
    flow: str | None = None
    since: str | None = Field(None, description="failed_at >= since (RFC 3339)")
    until: str | None = Field(None, description="failed_at < until (RFC 3339)")


def _query(
    request: Request, scope: Scope, filters: Filters, status: Status, cursor: str | None, limit: int
) -> ScanQuery:
    equals: dict[str, str] = {}
    if filters.source_topic:
        registry: TopicRegistry = request.app.state.registry
        logical = filters.source_topic.removesuffix(".dlq")
        equals["source_topic"] = registry.get(logical).name  # UnknownTopic: 404
    if filters.tenant:
        if scope.tenant is not None and filters.tenant != scope.tenant:
            raise Forbidden("an admin sees only its own tenant's dead letters")
        equals["tenant"] = filters.tenant
    for field in ("reason", "error_class", "flow"):
        value = getattr(filters, field)
        if value:
            equals[field] = value
    if status != "all":
        equals["status"] = status
    try:
        after = decode_cursor(cursor) if cursor else None
    except ValueError as exc:
        raise SchemaValidationError(
            schema_id="request", field="/query/cursor", rule="cursor", message=str(exc)
        ) from None
    return ScanQuery(
        order_by="failed_at",
        equals=equals,
        since=filters.since,
        until=filters.until,
        after=after,
        limit=limit,
    )


def _listed(rows: list[dict[str, Any]], cursor: str | None) -> dict[str, Any]:
    return {"entries": [{"id": public_id(r["entry_id"]), **r} for r in rows], "next_cursor": cursor}


@router.get(
    "", summary="List dead letters, newest first", responses=responses(401, 403, 404, 422, 503)
)
async def list_dead_letters(
    request: Request,
    filters: Filters = Depends(),
    status: Status = Query("open"),
    cursor: str | None = Query(None, max_length=2048, pattern=CURSOR_PATTERN),
    limit: int = Query(50, ge=1, le=200),
    scope: Scope = Depends(admin_scope),
    service: DeadLetters = Depends(dead_letters),
) -> dict[str, Any]:
    rows, next_cursor = await service.list_entries(
        scope, _query(request, scope, filters, status, cursor, limit)
    )
    return _listed(rows, next_cursor)


@router.get(
    "/entries/{id}",
    summary="Inspect one dead letter",
    responses=responses(400, 401, 403, 404, 422, 503),
)
async def inspect_dead_letter(
    ident: str = Path(alias="id", max_length=MAX_ID_CHARS),
    scope: Scope = Depends(admin_scope),
    service: DeadLetters = Depends(dead_letters),
) -> dict[str, Any]:
    """The index entry and the full envelope: raw key and value, headers, error and stack."""
    entry = await _entry(service, scope, ident)
    try:
        envelope = await service.envelope(entry)
    except EntryNotFound as exc:
        raise NotFound(str(exc)) from None
    return {"id": ident, **entry, "envelope": envelope}


class ActionBody(BaseModel):
    """Optional body of an action on one dead letter."""

    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(None, max_length=1024, description="Why (kept in the index)")
    force: bool = Field(False, description="Replay even when it was replayed already")


Body_ = TypeVar("Body_", bound=BaseModel)


async def _body(request: Request, model: type[Body_], *, required: bool) -> Body_:
    """The body read the gateway's one strict way (media type, size, strict JSON), then
    checked against `model`; an action's body may be empty."""
    if not required and not await request.body():
        return model.model_validate({})
    value = await read_json(request)
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(), body=value) from None


def _documented(model: type[BaseModel], *, required: bool) -> dict[str, Any]:
    schema = model.model_json_schema()
    return {
        "requestBody": {
            "required": required,
            "content": {"application/json": {"schema": schema}},
        }
    }


@router.post(
    "/entries/{id}/replay",
    summary="Republish a dead letter to its source topic",
    responses=responses(400, 401, 403, 404, 409, 413, 415, 422, 503),
    openapi_extra=_documented(ActionBody, required=False),
)
async def replay_dead_letter(
    request: Request,
    ident: str = Path(alias="id", max_length=MAX_ID_CHARS),
    scope: Scope = Depends(admin_scope),
    service: DeadLetters = Depends(dead_letters),
) -> dict[str, Any]:
    body = await _body(request, ActionBody, required=False)
    return await _replay(service, scope, ident, body.force)


@router.post(
    "/entries/{id}/ack",
    summary="Acknowledge a dead letter (it leaves the open list)",
    responses=responses(400, 401, 403, 404, 413, 415, 422, 503),
    openapi_extra=_documented(ActionBody, required=False),
)
async def ack_dead_letter(
    request: Request,
    ident: str = Path(alias="id", max_length=MAX_ID_CHARS),
    scope: Scope = Depends(admin_scope),
    service: DeadLetters = Depends(dead_letters),
) -> dict[str, Any]:
    body = await _body(request, ActionBody, required=False)
    try:
        result = await service.ack(scope, entry_id_of(ident), body.note)
    except EntryNotFound as exc:
        raise NotFound(str(exc)) from None
    return {"id": ident, "action": result.action, "status_before": result.status_before}


class BulkReplay(Filters):
    """Which open dead letters to replay, how many, and how fast."""

    model_config = ConfigDict(extra="forbid")

    limit: int = Field(100, ge=1, le=MAX_BULK)
    per_second: float = Field(20.0, gt=0, le=500, description="Replay rate limit")


@router.post(
    "/replay",
    summary="Replay the open dead letters a filter selects (rate-limited)",
    responses=responses(400, 401, 403, 404, 413, 415, 422, 503),
    openapi_extra=_documented(BulkReplay, required=True),
)
async def replay_selection(
    request: Request,
    scope: Scope = Depends(admin_scope),
    service: DeadLetters = Depends(dead_letters),
) -> dict[str, Any]:
    body = await _body(request, BulkReplay, required=True)
    query = _query(request, scope, body, "open", None, min(body.limit, 200))
    results = await service.replay_many(scope, query, limit=body.limit, per_second=body.per_second)
    return {
        "replayed": sum(r.action == "replayed" for r in results),
        "refused": [
            {"id": public_id(r.entry_id), "reason": r.detail}
            for r in results
            if r.action != "replayed"
        ],
    }


# --- the upstream platform's paths -------------------------------------------------------------


@router.get(
    "/{topic}",
    summary="Open dead letters of one topic",
    responses=responses(400, 401, 403, 404, 422, 503),
)
async def list_topic_dead_letters(
    request: Request,
    topic: str = Path(max_length=249),
    cursor: str | None = Query(None, max_length=2048, pattern=CURSOR_PATTERN),
    limit: int = Query(50, ge=1, le=200),
    scope: Scope = Depends(admin_scope),
    service: DeadLetters = Depends(dead_letters),
) -> dict[str, Any]:
    """`topic` is the source topic or its `.dlq` name."""
    query = _query(
        request, scope, Filters.model_validate({"source_topic": topic}), "open", cursor, limit
    )
    rows, next_cursor = await service.list_entries(scope, query)
    return _listed(rows, next_cursor)


@router.post(
    "/{topic}/{id}/reprocess",
    summary="Replay one dead letter (upstream path)",
    responses=responses(400, 401, 403, 404, 409, 422, 503),
)
async def reprocess(
    topic: str = Path(max_length=249),
    ident: str = Path(alias="id", max_length=MAX_ID_CHARS),
    scope: Scope = Depends(admin_scope),
    service: DeadLetters = Depends(dead_letters),
) -> dict[str, Any]:
    return await _replay(service, scope, ident, False)


@router.delete(
    "/{topic}",
    summary="Purge the open dead letters of one topic (upstream path)",
    responses=responses(400, 401, 403, 404, 422, 503),
)
async def purge_topic(
    request: Request,
    topic: str = Path(max_length=249),
    limit: int = Query(MAX_BULK, ge=1, le=MAX_BULK),
    scope: Scope = Depends(admin_scope),
    service: DeadLetters = Depends(dead_letters),
) -> dict[str, Any]:
    """Purged entries leave the open list; the records stay on the DLQ topic until retention."""
    query = _query(
        request, scope, Filters.model_validate({"source_topic": topic}), "open", None, 200
    )
    results = await service.purge(scope, query, limit=limit)
    return {"purged": len(results)}


async def _entry(service: DeadLetters, scope: Scope, ident: str) -> dict[str, Any]:
    try:
        return await service.entry(scope, entry_id_of(ident))
    except EntryNotFound as exc:
        raise NotFound(str(exc)) from None


async def _replay(service: DeadLetters, scope: Scope, ident: str, force: bool) -> dict[str, Any]:
    try:
        result = await service.replay(scope, entry_id_of(ident), force=force)
    except EntryNotFound as exc:
        raise NotFound(str(exc)) from None
    except ReplayRefused as exc:
        if exc.rule == "replayed":
            raise Conflict(str(exc)) from None
        raise SchemaValidationError(
            schema_id="replay", field=exc.field, rule=exc.rule, message=str(exc)
        ) from None
    return {
        "id": ident,
        "action": result.action,
        "status_before": result.status_before,
        "detail": result.detail,
    }
