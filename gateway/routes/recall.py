"""GET /v1/memory/recall: what the caller's tenant remembered, answered by the memory backend."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel

from gateway.context import EdgeContext, edge_context
from gateway.errors import GatewayError
from processors.memory import TOP_K_MAX, RecallHit, RecallQuery
from processors.memory_keys import DEFAULT_UNIVERSE, MemoryKeyError, check_part
from schemas import SchemaValidationError
from state.memory.backend import MemoryBackend
from state.memory.errors import BackendRejected, BackendUnavailable

router = APIRouter(tags=["memory"])

MAX_QUERY_CHARS = 2048  # a query ORs at most 32 words; longer text adds nothing
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class MemoryUnavailable(GatewayError):
    """The memory backend cannot answer now (down, breaker open, timeout): retry later."""

    status, code = 503, "memory_unavailable"


class Hit(BaseModel):
    key: str | None
    score: float
    value: dict[str, Any]
    occurred_at: datetime | None = None
    coordinate: list[float] | None = None


class Recalled(BaseModel):
    results: list[Hit]
    namespace: str
    universe: str


def memory_backend(request: Request) -> MemoryBackend:
    """FastAPI dependency: the process's one memory backend, opened in the app lifespan."""
    backend: MemoryBackend = request.app.state.memory_backend
    return backend


def _refused(name: str, rule: str, message: str) -> SchemaValidationError:
    return SchemaValidationError(
        schema_id="request", field=f"/query/{name}", rule=rule, message=message
    )


def _hit(hit: RecallHit) -> dict[str, Any]:
    return {
        "key": hit.key,
        "score": hit.score,
        "value": dict(hit.value),
        "occurred_at": hit.occurred_at,
        "coordinate": list(hit.coordinate) if hit.coordinate else None,
    }


@router.get(
    "/v1/memory/recall",
    response_model=Recalled,
    summary="Recall memories",
    responses={
        401: {"description": "Missing or invalid bearer token"},
        422: {"description": "A parameter breaks its rule (field and rule named)"},
        503: {"description": "The memory backend is unavailable; retry after Retry-After"},
    },
)
async def recall(
    request: Request,
    query: str = Query(min_length=1, max_length=MAX_QUERY_CHARS, description="Words to match"),
    session_id: str | None = Query(None, max_length=256, description="Only this session"),
    namespace: str | None = Query(None, max_length=128, description="SOMA_NAMESPACE if absent"),
    universe: str | None = Query(None, max_length=128, description="X-Universe-Id if absent"),
    top_k: int = Query(3, ge=1, le=TOP_K_MAX, description="At most this many hits"),
    edge: EdgeContext = Depends(edge_context),
    backend: MemoryBackend = Depends(memory_backend),
) -> dict[str, Any]:
    """Best hits first, from the caller's tenant only (the tenant comes from the token)."""
    scope: dict[str, str] = {
        "namespace": namespace or request.app.state.settings.namespace,
        "universe": universe or edge.agent.get("universe_id") or DEFAULT_UNIVERSE,
    }
    for name, value in scope.items():
        try:
            check_part(name, value)
        except MemoryKeyError as exc:  # a part no memory key can hold ('/', control chars)
            raise _refused(name, "scope", str(exc)) from None
    if session_id is not None and _CONTROL.search(session_id):
        # The events' rule for a session id (it is part of record keys).
        raise _refused("session_id", "pattern", "session_id must not contain control characters")
    try:
        wanted = RecallQuery(
            tenant=edge.tenant,
            namespace=scope["namespace"],
            universe=scope["universe"],
            query=query,
            top_k=top_k,
            session_id=session_id,
        )
    except ValueError as exc:  # a query of blanks only
        raise _refused("query", "minLength", str(exc)) from None
    try:
        hits = await backend.recall(wanted)
    except BackendUnavailable as exc:
        retry = max(1, round(exc.retry_after_s or 1))
        raise MemoryUnavailable(
            f"memory backend unavailable ({exc.reason}); retry later",
            headers={"Retry-After": str(retry)},
            retry_after_s=retry,
        ) from None
    except BackendRejected as exc:  # the backend refused the query itself: the caller's input
        raise _refused(exc.field or "query", "backend", str(exc)) from None
    return {"results": [_hit(hit) for hit in hits], **scope}
