"""The plane overview page (`/admin/overview`): lag with a short history, dead letters, outbox,
breaker, refreshing by itself; for people without Grafana.

A static page and its script, served from the package like the dead-letter page, under the
same policy: no inline script, nothing loaded from another origin, values rendered as text.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from gateway.routes.dlq_page import CSP, static_text

router = APIRouter(include_in_schema=False)


@router.get("/admin/overview")
async def overview_page() -> HTMLResponse:
    return HTMLResponse(static_text("overview.html"), headers={"Content-Security-Policy": CSP})


@router.get("/admin/overview.js")
async def overview_script() -> Response:
    return Response(static_text("overview.js"), media_type="text/javascript")
