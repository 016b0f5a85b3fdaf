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
from flows.spec import StatePage, WorkerPage
from processors.scan import ScanQuery, decode_cursor, select
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
        _register_scan_page(app, runtime, page, source, token)
    for extra in spec.pages:
        _register_worker_page(app, runtime, extra, token)


def scan_query(params: Any, order_by: str) -> ScanQuery:
    """The scan a worker's query string asks for (ValueError names what is wrong)."""
    limit = int(params.get("limit", "50"))
    if not 1 <= limit <= MAX_SCAN_ROWS:
        raise ValueError(f"limit must be 1..{MAX_SCAN_ROWS}")
    after = params.get("after")
    return ScanQuery(
        order_by=order_by,
        equals={k[3:]: v for k, v in params.items() if k.startswith("eq.")},
        since=params.get("since"),
        until=params.get("until"),
        after=decode_cursor(after) if after else None,
        limit=limit,
    )


def _from_gateway(request: Request, token: str) -> bool:
    # Only the gateway may ask: it scopes every key and filter to the caller's tenant first.
    offered = request.headers.get(INTERNAL_HEADER, "")
    return hmac.compare_digest(offered.encode(), token.encode())


_REFUSED = {"error": "internal endpoint: gateway credential required"}
MAX_SCAN_ROWS = 1001  # a page of 1000 and one to tell whether there is more


def _register_state_page(
    app: faust.App, runtime: FlowRuntime, page: StatePage, source: str, token: str
) -> None:
    table = runtime.spec.table(page.table)
    store = runtime.tables[page.table]

    @app.page(f"/state/{page.name}/{{key:.+}}")  # keys contain '/'
    async def state_page(web: View, request: Request, key: str) -> Response:
        if not _from_gateway(request, token):
            return web.json(_REFUSED, status=401)
        partition = runtime.partition_of(page.table, key)
        if TP(source, partition) not in assigned_actives(app):
            return web.json({"key": key, "partition": partition, "owner": False}, status=421)
        if not worker_ready(app):
            # Owner, but restoring or rebalancing: the value may be stale.
            body = {"key": key, "partition": partition, "owner": True, "ready": False}
            return web.json(body, status=503, headers={"Retry-After": "1"})
        raw = store.get(key.encode())
        value = table.default if raw is None else table.decode(orjson.loads(raw))
        answer: dict[str, Any] = {"key": key, "partition": partition, "owner": True}
        if value is None:  # a table without a default: the key is simply not there
            return web.json({**answer, "found": False})
        answer.update(table.encode(value))
        return web.json(answer)


def _register_scan_page(
    app: faust.App, runtime: FlowRuntime, page: StatePage, source: str, token: str
) -> None:
    table = runtime.spec.table(page.table)
    store = runtime.tables[page.table]

    @app.page(f"/scan/{page.name}")
    async def scan_page(web: View, request: Request) -> Response:
        """Rows of the partitions this worker owns: `?limit=&after=&since=&until=&eq.F=V`."""
        if not _from_gateway(request, token):
            return web.json(_REFUSED, status=401)
        if not worker_ready(app):
            return web.json({"ready": False}, status=503, headers={"Retry-After": "1"})
        try:
            query = scan_query(request.query, page.order_by or "key")
        except ValueError as exc:
            return web.json({"error": str(exc)}, status=400)
        owned = {tp.partition for tp in assigned_actives(app) if tp.topic == source}
        rows = (
            {"key": key.decode(), **table.encode(table.decode(orjson.loads(raw)))}
            for key, raw in list(store.items())
            if runtime.partition_of(page.table, key.decode()) in owned
        )
        return web.json({"rows": select(rows, query), "partitions": sorted(owned)})


def _register_worker_page(
    app: faust.App, runtime: FlowRuntime, page: WorkerPage, token: str
) -> None:
    async def answer(web: View, request: Request) -> Response:
        if not _from_gateway(request, token):
            return web.json(_REFUSED, status=401)
        if not worker_ready(app):
            return web.json({"ready": False}, status=503, headers={"Retry-After": "1"})
        params = {str(k): str(v) for k, v in request.query.items()}
        status, body = await page.handler(runtime, params)
        return web.json(dict(body), status=status)

    class Page(View):
        async def get(self, request: Request) -> Response:
            if page.method != "GET":
                return self.json({"error": "method not allowed"}, status=405)
            return await answer(self, request)

        async def post(self, request: Request) -> Response:
            if page.method != "POST":
                return self.json({"error": "method not allowed"}, status=405)
            return await answer(self, request)

    app.page(page.path)(Page)


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
