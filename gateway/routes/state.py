"""GET /v1/state/<page>/{id}: a flow's changelog-backed state, one route per declared page."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Depends, Path, Request

from gateway.auth import Principal, require_principal
from gateway.openapi import responses
from schemas import SchemaValidationError
from state.catalog import PageRoute, page_routes
from state.reads import StateReader

router = APIRouter(tags=["state"])


def state_reader(request: Request) -> StateReader:
    """FastAPI dependency: the process's one state reader (tests override it)."""
    reader: StateReader = request.app.state.state_reader
    return reader


def _route(page: PageRoute) -> Callable[..., Awaitable[dict[str, Any]]]:
    async def read_state(
        ident: str = Path(alias="id", min_length=1, max_length=256),
        principal: Principal = Depends(require_principal),
        reader: StateReader = Depends(state_reader),
    ) -> dict[str, Any]:
        # The tenant is the token's, never a parameter: a caller can only read its own keys.
        try:
            return await reader.read(page.route, principal.tenant, ident)
        except ValueError as exc:
            # The reader refuses an id that cannot form a record key: the caller's mistake.
            raise SchemaValidationError(
                schema_id="request", field="/path/id", rule="key", message=str(exc)
            ) from None

    read_state.__name__ = f"read_{page.route.replace('-', '_')}"
    return read_state


for _page in page_routes().values():
    router.add_api_route(
        f"/v1/state/{_page.route}/{{id}}",
        _route(_page),
        methods=["GET"],
        summary=_page.page.summary,
        description=(
            f"The `{_page.page.table}` value of the caller's `{_page.key_rule.value}` key, kept "
            f"by the `{_page.flow.name}` flow and answered by the worker owning its partition."
        ),
        responses=responses(401, 422, 503),
    )
