"""The gateway's bound on requests held at once: past it, 503 + Retry-After without waiting."""

from __future__ import annotations

import asyncio

import httpx
from prometheus_client import REGISTRY
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.in_flight import InFlightLimitMiddleware

LIMIT = 2


def _app(release: asyncio.Event, entered: asyncio.Queue[str]) -> Starlette:
    async def slow(request: Request) -> JSONResponse:
        await entered.put(request.url.path)
        await release.wait()
        return JSONResponse({"ok": True})

    async def probe(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    app = Starlette(routes=[Route("/slow", slow, methods=["POST"]), Route("/healthz", probe)])
    app.add_middleware(InFlightLimitMiddleware, limit=LIMIT)
    return app


async def test_requests_past_the_bound_are_refused_at_once_and_probes_still_answer() -> None:
    release, entered = asyncio.Event(), asyncio.Queue[str]()
    transport = httpx.ASGITransport(app=_app(release, entered))
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        held = [asyncio.create_task(client.post("/slow", json={})) for _ in range(LIMIT)]
        for _ in range(LIMIT):
            await asyncio.wait_for(entered.get(), timeout=5)

        busy = await asyncio.wait_for(client.post("/slow", json={}), timeout=5)
        assert busy.status_code == 503
        assert int(busy.headers["Retry-After"]) >= 1
        assert busy.json()["error"] == "gateway_busy"
        assert (await client.get("/healthz")).status_code == 200  # exempt: holds nothing

        release.set()
        assert [r.status_code for r in await asyncio.gather(*held)] == [200] * LIMIT
        # The slots are free again.
        assert (await asyncio.wait_for(client.post("/slow", json={}), timeout=5)).status_code == 200

    labels = {"queue": "gateway_requests"}
    assert REGISTRY.get_sample_value("soma_queue_capacity", labels) == LIMIT
    # The process-wide mark (other tests' gateways count too) saw this one's full bound.
    assert (REGISTRY.get_sample_value("soma_queue_high_water", labels) or 0) >= LIMIT
