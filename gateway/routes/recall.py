"""GET /v1/memory/recall: what the caller's tenant remembered, through the Redis recall cache."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel

from gateway.context import EdgeContext, edge_context
from gateway.errors import GatewayError
from gateway.openapi import responses
from processors.memory import TOP_K_MAX, RecallHit, RecallQuery
from processors.memory_keys import DEFAULT_UNIVERSE, MemoryKeyError, check_part
from schemas import SchemaValidationError
from state.memory.backend import MemoryBackend
from state.memory.errors import BackendRejected, BackendUnavailable
from state.recall_cache import RecallCache

router = APIRouter(tags=["memory"])

MAX_QUERY_CHARS = 2048  # a query ORs at most 32 words; longer text adds nothing
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# The rules below, stated in the OpenAPI document only: the route checks them itself so a
# refusal names the rule the docs give (`scope` for namespace and universe, `pattern`).
_NO_CONTROL: dict[str, Any] = {"pattern": "^[^\\x00-\\x1f\\x7f]*$"}
_PART: dict[str, Any] = {"pattern": "^[^/\\x00-\\x1f\\x7f]*$"}
CACHE_HEADER = "X-Recall-Cache"  # hit, miss, uncached or off: where the answer came from


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


def hit_body(hit: RecallHit) -> dict[str, Any]:
    return {
        "key": hit.key,
        "score": hit.score,
        "value": dict(hit.value),
        "occurred_at": hit.occurred_at,
        "coordinate": list(hit.coordinate) if hit.coordinate else None,
    }


def backend_unavailable(exc: BackendUnavailable) -> MemoryUnavailable:
    """503 with Retry-After: the backend said when (or 1 s)."""
    retry = max(1, round(exc.retry_after_s or 1))
    return MemoryUnavailable(
        f"memory backend unavailable ({exc.reason}); retry later",
        headers={"Retry-After": str(retry)},
        retry_after_s=retry,
    )


def backend_refused(exc: BackendRejected) -> SchemaValidationError:
    """The backend refused the query itself: the caller's input, named."""
    return _refused(exc.field or "query", "backend", str(exc))


async def recall_query(
    request: Request,
    query: str = Query(min_length=1, max_length=MAX_QUERY_CHARS, description="Words to match"),
    session_id: str | None = Query(
        None, max_length=256, description="Only this session", json_schema_extra=_NO_CONTROL
    ),
    namespace: str | None = Query(
        None, max_length=128, description="SOMA_NAMESPACE if absent", json_schema_extra=_PART
    ),
    universe: str | None = Query(
        None, max_length=128, description="X-Universe-Id if absent", json_schema_extra=_PART
    ),
    top_k: int = Query(3, ge=1, le=TOP_K_MAX, description="At most this many hits"),
    edge: EdgeContext = Depends(edge_context),
) -> RecallQuery:
    """FastAPI dependency: the validated query of the caller's tenant (from the token), with
    namespace and universe resolved; 422 naming the parameter otherwise."""
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
        return RecallQuery(
            tenant=edge.tenant,
            namespace=scope["namespace"],
            universe=scope["universe"],
            query=query,
            top_k=top_k,
            session_id=session_id,
        )
    except ValueError as exc:  # a query of blanks only
        raise _refused("query", "minLength", str(exc)) from None


@router.get(
    "/v1/memory/recall",
    response_model=Recalled,
    summary="Recall memories",
    responses={
        200: {
            "headers": {
                CACHE_HEADER: {
                    "description": "hit, miss, uncached (Redis unavailable) or off",
                    "schema": {"type": "string", "enum": ["hit", "miss", "uncached", "off"]},
                }
            }
        },
        **responses(401, 422, 503),
    },
)
async def recall(
    request: Request,
    response: Response,
    wanted: RecallQuery = Depends(recall_query),
    backend: MemoryBackend = Depends(memory_backend),
) -> dict[str, Any]:
    """Best hits first, from the caller's tenant only (the tenant comes from the token).

    Answered through the Redis recall cache (state/recall_cache.py) when it is on: a write of
    the tenant/namespace that the backend acknowledged makes earlier answers unreachable.
    """
    cache: RecallCache | None = request.app.state.recall_cache
    try:
        if cache is None:
            hits, outcome = await backend.recall(wanted), "off"
        else:
            hits, cached = await cache.recall(wanted, lambda: backend.recall(wanted))
            outcome = cached.value
    except BackendUnavailable as exc:
        raise backend_unavailable(exc) from None
    except BackendRejected as exc:
        raise backend_refused(exc) from None
    response.headers[CACHE_HEADER] = outcome
    return {
        "results": [hit_body(hit) for hit in hits],
        "namespace": wanted.namespace,
        "universe": wanted.universe,
    }
