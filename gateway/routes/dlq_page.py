"""The dead-letter web page (`/admin/dlq`): list, filter, inspect, replay, acknowledge.

A static page and its script, served from the package; it calls the admin API with the
operator's bearer token, which it keeps in the tab's session storage only.
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

router = APIRouter(include_in_schema=False)

# Scripts only from this origin, no inline script: the page renders dead letters (data a
# hostile producer chose) as text nodes, and the policy keeps any slip from executing.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'"
)


def static_text(name: str) -> str:
    return (resources.files("gateway") / "static" / name).read_text(encoding="utf-8")


@router.get("/admin/dlq")
async def dead_letter_page() -> HTMLResponse:
    return HTMLResponse(static_text("dlq.html"), headers={"Content-Security-Policy": CSP})


@router.get("/admin/dlq.js")
async def dead_letter_script() -> Response:
    return Response(static_text("dlq.js"), media_type="text/javascript")
