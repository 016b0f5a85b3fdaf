"""A stand-in for an external service, SomaBrain's memory HTTP API, with switchable faults.

It is not SomaBrain: it answers the way DESIGN.md records the real service answering, so the
client is tested against those answers: bearer auth (401 `{"detail":"Unauthorized"}`), every
path also under `/api/`, the tenant read from `X-Tenant-ID` only (a body `tenant` is ignored),
422 `{"detail":[{type, loc, msg}]}` on invalid input, no `/link` (404), `deduplicated` always
false, the coordinate derived from `universe::key` only (so unscoped keys of two tenants
overwrite each other), `/health` 200 even when its body says ok:false, batch remember 503 when
the store is down. Faults (`POST /_standin/faults`): slow, breaker_open (503), rate_limited
(429 + Retry-After), bad_gateway (502), store_down; "down" is the process not running.

Run: `SOMABRAIN_STANDIN_TOKEN=t python -m uvicorn tests.support.somabrain_standin:app --port N`.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, FastAPI, Header, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

TOKEN = os.environ.get("SOMABRAIN_STANDIN_TOKEN", "standin-token")
OPEN_PATHS = ("/healthz", "/readyz", "/health", "/_standin")


class Fault(BaseModel):
    mode: str = "none"  # none | slow | breaker_open | rate_limited | bad_gateway | store_down
    count: int | None = None  # requests affected before the fault clears itself; None: all
    delay_s: float = 2.0  # for slow
    retry_after: str | None = None  # Retry-After header value for 429/503
    paths: list[str] = Field(default_factory=list)  # only these paths (suffix match); [] = all


class State:
    def __init__(self) -> None:
        self.fault = Fault()
        self.items: dict[str, dict[str, Any]] = {}  # coordinate key -> stored item
        self.requests: list[dict[str, Any]] = []
        self.link_api = False  # the observed real service has no /link


state = State()


class LinkIn(BaseModel):
    rel: str
    target: str
    weight: float | None = Field(None, ge=0)


class RememberIn(BaseModel):
    tenant: str = ""
    namespace: str = Field("default", min_length=1)
    key: str = Field(..., min_length=1)
    value: dict[str, Any]
    meta: dict[str, Any] | None = None
    universe: str | None = None
    ttl_seconds: int | None = Field(None, ge=0)
    tags: list[str] = Field(default_factory=list)
    links: list[LinkIn] = Field(default_factory=list)
    trace_id: str | None = None
    embedding: list[float] | None = None


class BatchItem(BaseModel):
    key: str = Field(..., min_length=1)
    value: dict[str, Any]
    meta: dict[str, Any] | None = None
    ttl_seconds: int | None = Field(None, ge=0)
    tags: list[str] = Field(default_factory=list)
    trace_id: str | None = None
    universe: str | None = None


class BatchIn(BaseModel):
    tenant: str = Field(..., min_length=1)
    namespace: str = Field(..., min_length=1)
    items: list[BatchItem] = Field(..., min_length=1)
    universe: str | None = None


class RecallIn(BaseModel):
    tenant: str = Field(..., min_length=1)
    namespace: str = Field(..., min_length=1)
    query: str = Field(..., min_length=1)
    top_k: int = Field(3, ge=1, le=50)
    universe: str | None = None
    min_score: float | None = Field(None, ge=0)
    max_age_seconds: int | None = Field(None, ge=0)


def coordinate(universe: str, key: str) -> list[float]:
    """Three floats from `universe::key` alone: the tenant plays no part (as observed)."""
    digest = hashlib.sha256(f"{universe}::{key}".encode()).digest()
    return [int.from_bytes(digest[i : i + 4], "big") / 2**32 for i in (0, 4, 8)]


def _store(tenant: str, namespace: str, universe: str, item: RememberIn | BatchItem) -> list[float]:
    coord = coordinate(universe, item.key)
    payload = dict(item.value) | dict(item.meta or {})
    if isinstance(item, RememberIn) and item.embedding is not None:
        payload.setdefault("embedding", item.embedding)
    state.items[",".join(map(str, coord))] = {
        "tenant": tenant,
        "namespace": namespace,
        "universe": universe,
        "key": item.key,
        "payload": payload,
        "coordinate": coord,
        "stored_at": time.time(),
    }
    return coord


def _words(value: Any) -> set[str]:
    if isinstance(value, str):
        return set(re.findall(r"\w+", value.lower()))
    if isinstance(value, dict):
        return set().union(*(_words(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_words(v) for v in value)) if value else set()
    return set()


router = APIRouter()


def _tenant(x_tenant_id: str | None) -> str:
    return x_tenant_id or "public"


@router.post("/memory/remember")
async def remember(body: RememberIn, x_tenant_id: str | None = Header(None)) -> dict[str, Any]:
    tenant = _tenant(x_tenant_id)
    coord = _store(tenant, body.namespace, body.universe or "real", body)
    return {
        "ok": True,
        "tenant": tenant,
        "namespace": body.namespace,
        "coordinate": coord,
        "queued": False,
        "breaker_open": False,
        "deduplicated": False,
        "trace_id": body.trace_id,
        "request_id": uuid.uuid4().hex,
        "warnings": [],
    }


@router.post("/memory/remember/batch", response_model=None)
async def remember_batch(
    body: BatchIn, x_tenant_id: str | None = Header(None)
) -> dict[str, Any] | JSONResponse:
    if state.fault.mode == "store_down":
        return JSONResponse({"detail": "memory store unavailable"}, status_code=503)
    tenant = _tenant(x_tenant_id)
    results = []
    for item in body.items:
        coord = _store(tenant, body.namespace, item.universe or body.universe or "real", item)
        results.append({"key": item.key, "coordinate": coord, "deduplicated": False})
    return {"ok": True, "tenant": tenant, "namespace": body.namespace, "results": results}


@router.post("/memory/recall")
async def recall(body: RecallIn, x_tenant_id: str | None = Header(None)) -> dict[str, Any]:
    started, tenant, wanted = time.monotonic(), _tenant(x_tenant_id), _words(body.query)
    hits = []
    for item in state.items.values():
        if (item["tenant"], item["namespace"]) != (tenant, body.namespace):
            continue
        if body.universe and item["universe"] != body.universe:
            continue
        stamp = item["payload"].get("timestamp")
        too_old = body.max_age_seconds is not None and isinstance(stamp, int | float)
        if too_old and time.time() - stamp > body.max_age_seconds:  # type: ignore[operator]
            continue
        score = len(wanted & _words(item["payload"])) / max(len(wanted), 1)
        if score <= 0 or (body.min_score is not None and score < body.min_score):
            continue
        hits.append(
            {
                "layer": "ltm",
                "score": score,
                "payload": item["payload"],
                "coordinate": item["coordinate"],
            }
        )
    hits.sort(key=lambda h: -h["score"])
    return {
        "results": hits[: body.top_k],
        "duration_ms": (time.monotonic() - started) * 1000,
        "total_results": len(hits),
    }


@router.post("/link", response_model=None)
async def link(request: Request) -> dict[str, Any] | JSONResponse:
    if not state.link_api:
        return JSONResponse({"detail": "Not Found"}, status_code=404)
    return {"ok": True}


@router.get("/health")
async def health() -> dict[str, Any]:
    ok = state.fault.mode != "store_down"
    return {"ok": ok, "components": {"memory": ok}, "ready": ok}


@router.get("/healthz", response_model=None)
async def healthz() -> dict[str, Any]:
    return {"ok": True}


@router.get("/readyz", response_model=None)
async def readyz() -> dict[str, Any] | JSONResponse:
    if state.fault.mode == "store_down":
        return JSONResponse({"ok": False, "detail": "memory store unavailable"}, status_code=503)
    return {"ok": True}


app = FastAPI(title="SomaBrain stand-in")
app.include_router(router)
app.include_router(router, prefix="/api")


@app.post("/_standin/faults")
async def set_fault(fault: Fault) -> dict[str, Any]:
    state.fault = fault
    return fault.model_dump()


@app.post("/_standin/link-api")
async def set_link_api(enabled: bool) -> dict[str, bool]:
    state.link_api = enabled
    return {"link_api": enabled}


@app.get("/_standin/requests")
async def requests() -> list[dict[str, Any]]:
    return state.requests


@app.get("/_standin/items")
async def items() -> list[dict[str, Any]]:
    return list(state.items.values())


def _fault_applies(path: str) -> bool:
    fault = state.fault
    if fault.mode in ("none", "store_down") or fault.count == 0:
        return False
    return not fault.paths or any(path.endswith(p) for p in fault.paths)


@app.middleware("http")
async def gate(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    path = request.url.path
    if path.startswith("/_standin"):
        return await call_next(request)
    body = await request.body()
    state.requests.append(
        {"path": path, "headers": dict(request.headers), "body": body.decode(errors="replace")}
    )
    public = any(path == p or path == "/api" + p for p in OPEN_PATHS)
    if not public and request.headers.get("authorization") != f"Bearer {TOKEN}":
        return JSONResponse({"detail": "Unauthorized"}, status_code=401)
    if _fault_applies(path):
        fault = state.fault
        if fault.count is not None:
            fault.count -= 1
        headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
        if fault.mode == "slow":
            await asyncio.sleep(fault.delay_s)
        elif fault.mode == "breaker_open":
            detail = {"detail": "memory circuit breaker open", "breaker_open": True}
            return JSONResponse(detail, status_code=503, headers=headers)
        elif fault.mode == "rate_limited":
            return JSONResponse({"detail": "rate limited"}, status_code=429, headers=headers)
        elif fault.mode == "bad_gateway":
            return JSONResponse({"detail": "bad gateway"}, status_code=502)
    return await call_next(request)
