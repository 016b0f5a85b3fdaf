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
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'"
)


def _static(name: str) -> str:
    return (resources.files("gateway") / "static" / name).read_text(encoding="utf-8")


@router.get("/admin/dlq")
async def dead_letter_page() -> HTMLResponse:
    return HTMLResponse(_static("dlq.html"), headers={"Content-Security-Policy": _CSP})


@router.get("/admin/dlq.js")
async def dead_letter_script() -> Response:
    return Response(_static("dlq.js"), media_type="text/javascript")
