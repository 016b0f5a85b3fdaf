"""A worker's web pages: readiness, Prometheus metrics, and its flow's state pages."""

from __future__ import annotations

import hmac
from typing import Any

import faust
import orjson
from faust.types import TP
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from flows.kit.batches import FlowRuntime
from flows.kit.faust_internals import assigned_actives, worker_ready
from flows.spec import StatePage
from processors.partitioning import partition_for
from soma.secrets import INTERNAL_HEADER, internal_token


def register_pages(app: faust.App, runtime: FlowRuntime, source: str) -> None:
    """/ready, /metrics, /health (flows that report one) and one /state/<page>/{key} per page."""
    spec = runtime.spec

    @app.page("/ready")
    async def ready(web: View, request: Request) -> Response:
        ok = worker_ready(app)
        actives = sorted(f"{tp.topic}:{tp.partition}" for tp in assigned_actives(app))
        body = {"ready": ok, "flow": spec.name, "app_id": app.conf.id, "actives": actives}
        return web.json(body, status=200 if ok else 503)

    @app.page("/metrics")
    async def prometheus(web: View, request: Request) -> Response:
        return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    if spec.health is not None:
        _register_health_page(app, runtime)

    token = internal_token(runtime.settings.stack_dir)
    for page in spec.state_pages:
        _register_state_page(app, runtime, page, source, token)


def _register_state_page(
    app: faust.App, runtime: FlowRuntime, page: StatePage, source: str, token: str
) -> None:
    table = runtime.spec.table(page.table)
    store = runtime.tables[page.table]

    @app.page(f"/state/{page.name}/{{key:.+}}")  # keys contain '/'
    async def state_page(web: View, request: Request, key: str) -> Response:
        offered = request.headers.get(INTERNAL_HEADER, "")
        if not hmac.compare_digest(offered.encode(), token.encode()):
            # Only the gateway may ask: it scopes every key to the caller's tenant first.
            return web.json({"error": "internal endpoint: gateway credential required"}, status=401)
        partition = partition_for(key.encode(), runtime.partitions)
        if TP(source, partition) not in assigned_actives(app):
            return web.json({"key": key, "partition": partition, "owner": False}, status=421)
        if not worker_ready(app):
            # Owner, but restoring or rebalancing: the value may be stale.
            body = {"key": key, "partition": partition, "owner": True, "ready": False}
            return web.json(body, status=503, headers={"Retry-After": "1"})
        raw = store.get(key.encode())
        value = table.default if raw is None else table.decode(orjson.loads(raw))
        answer: dict[str, Any] = {"key": key, "partition": partition, "owner": True}
        answer.update(table.encode(value))
        return web.json(answer)


def _register_health_page(app: faust.App, runtime: FlowRuntime) -> None:
    report = runtime.spec.health
    assert report is not None

    @app.page("/health")
    async def health(web: View, request: Request) -> Response:
        if runtime.resources is None:
            body = {"flow": runtime.spec.name, "status": "down", "detail": "starting"}
            return web.json(body, status=503, headers={"Retry-After": "1"})
        answer = {"flow": runtime.spec.name, **(await report(runtime.resources))}
        return web.json(answer, status=503 if answer.get("status") == "down" else 200)
