"""GET /healthz (dependency fan-out) and GET /metrics (Prometheus); unauthenticated, for probes."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from pydantic import BaseModel

from gateway.health import HealthReport, Status, check_health, overall_status
from gateway.replication_health import REPLICATION, replication_component

router = APIRouter(tags=["operations"])


class ComponentBody(BaseModel):
    status: Status
    latency_ms: float
    error: str | None


class HealthBody(BaseModel):
    """The health report: overall status and each dependency's."""

    status: Status
    components: dict[str, ComponentBody]


_HEALTH_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"model": HealthBody, "description": "ok or degraded: still serving"},
    503: {"model": HealthBody, "description": "down: take the gateway out of rotation"},
}
_METRICS_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {
        "description": "Prometheus text exposition",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    }
}


@router.get(
    "/healthz",
    summary="Health of the gateway's dependencies",
    response_class=JSONResponse,
    responses=_HEALTH_RESPONSES,
)
async def healthz(request: Request) -> JSONResponse:
    """200 when ok or degraded (still serving), 503 when down (take it out of rotation)."""
    state = request.app.state
    report, replication = await asyncio.gather(
        check_health(state.settings, state.kafka_admin, state.redis),
        replication_component(state.state_reader, state.settings.health_timeout_s),
    )
    if replication is not None:  # only once a replication flow ran against this plane
        components = {**report.components, REPLICATION: replication}
        report = HealthReport(overall_status(components), components)
    code = 503 if report.status is Status.DOWN else 200
    return JSONResponse(report.as_dict(), status_code=code)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses=_METRICS_RESPONSES,
)
async def metrics() -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
