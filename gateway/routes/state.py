"""GET /v1/state/session-events/{session_id}: the stream flow's per-session event count."""

from __future__ import annotations

import asyncio
import importlib
import inspect
from typing import Any

from fastapi import APIRouter, Depends, Path, Request

from gateway.auth import Principal, require_principal
from gateway.errors import StateUnavailable
from gateway.openapi import responses
from schemas import SchemaValidationError

router = APIRouter(tags=["state"])


@router.get(
    "/v1/state/session-events/{session_id}",
    summary="Events counted for a session",
    responses=responses(401, 422, 503),
)
async def session_events(
    request: Request,
    session_id: str = Path(min_length=1, max_length=256),
    principal: Principal = Depends(require_principal),
) -> dict[str, Any]:
    """The count kept by the stream flow's changelog-backed state; 503 + Retry-After while the
    state is not readable (worker rebalancing or restoring)."""
    # Imported here so the gateway starts, and serves everything else, before state/ exists.
    try:
        session_counts = importlib.import_module("state.session_counts")
        state_errors = importlib.import_module("state.errors")
    except ImportError as exc:
        raise StateUnavailable(f"session state is not deployed: {exc}") from None
    read = session_counts.read_session_count
    settings = request.app.state.settings
    # The tenant is the token's, never a parameter: a caller can only read its own sessions.
    try:
        if inspect.iscoroutinefunction(read):
            result = await read(settings, principal.tenant, session_id)
        else:
            # The reader may block on a worker's HTTP endpoint or a store: keep the loop free.
            result = await asyncio.to_thread(read, settings, principal.tenant, session_id)
    except state_errors.StateUnavailable as exc:
        retry_after = int(getattr(exc, "retry_after_s", 2) or 2)
        raise StateUnavailable(str(exc) or "session state unavailable", retry_after) from None
    except ValueError as exc:
        # The read API refuses an id that cannot form a record key: the caller's mistake.
        raise SchemaValidationError(
            schema_id="request", field="/path/session_id", rule="key", message=str(exc)
        ) from None
    return dict(result)
