"""The lag exporter: an always-on process that polls every plane group's lag and serves /metrics.

It is not a Faust flow: it joins no group and commits nothing. Each poll (`state/lag.py`) is
published at once, so a scrape sees one poll's values, never a mix. While the broker is
unreachable it keeps answering the last values with `soma_lag_exporter_up 0` and the time of
the last success, and it picks up again when the broker is back (the same clients reconnect).
Bounded jobs' progress files (`soma/job_progress.py`) are served alongside.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector, CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from processors.lag import OTHER_TENANTS, UNKNOWN_TENANT
from soma import metrics
from soma.job_progress import job_metrics_dir
from soma.lag_poller import IsolatedPoller
from soma.settings import Settings
from state.lag import GroupTopics, LagReader, LagReport, TenantLagRow
from topics.registry import TopicRegistry

log = logging.getLogger(__name__)

_LAG_GAUGES = (
    metrics.CONSUMER_LAG_OFFSETS,
    metrics.CONSUMER_LAG_SECONDS,
    metrics.CONSUMER_COMMITTED_OFFSET,
    metrics.CONSUMER_TENANT_LAG_OFFSETS,
    metrics.CONSUMER_TENANT_LAG_SECONDS,
    metrics.TOPIC_END_OFFSET,
    metrics.DEAD_LETTER_DEPTH,
    metrics.DEAD_LETTER_END_OFFSET,
)


def plane_groups(settings: Settings) -> list[GroupTopics]:
    """Every consumer group of the plane, from the flow specs: its group id and source topics."""
    from flows.catalog import flow_specs  # specs only: cheap, no Faust

    registry = TopicRegistry(settings.topic_prefix)
    return [
        GroupTopics(
            group=f"{settings.topic_prefix}{spec.app_id}",
            topics=tuple(registry.get(source).name for source in spec.sources),
            flow=spec.name,
        )
        for spec in flow_specs()
    ]


def dead_letter_topics(settings: Settings) -> list[str]:
    """Every dead-letter topic of the registry (prefix applied)."""
    registry = TopicRegistry(settings.topic_prefix)
    return sorted(spec.dlq for spec in registry if spec.dlq)


class RecentTenants:
    """Tenants seen lagging lately, so their series fall to 0 instead of vanishing.

    A tenant is only seen while its records are uncommitted; without this its series would
    flicker in and out with every commit. Bounded: `limit` tenants per group and topic, the
    most recently seen, for `ttl_s`.
    """

    def __init__(self, limit: int, ttl_s: float = 600.0) -> None:
        self.limit, self.ttl_s = limit, ttl_s
        self._seen: dict[tuple[str, str, str], dict[str, float]] = {}

    def update(self, report: LagReport) -> list[TenantLagRow]:
        """The report's tenant rows plus a zero row for each recent tenant not lagging now."""
        now = report.taken_at_ms / 1000
        rows = list(report.tenants)
        for row in report.tenants:
            if row.tenant not in (OTHER_TENANTS, UNKNOWN_TENANT):
                self._seen.setdefault((row.group, row.flow, row.topic), {})[row.tenant] = now
        lagging = {(r.group, r.flow, r.topic, r.tenant) for r in report.tenants}
        for (group, flow, topic), tenants in self._seen.items():
            recent = sorted(
                (t for t, at in tenants.items() if now - at <= self.ttl_s),
                key=lambda t: -tenants[t],
            )[: self.limit]
            self._seen[(group, flow, topic)] = {t: tenants[t] for t in recent}
            rows += [
                TenantLagRow(group, flow, topic, tenant, 0, 0.0, True)
                for tenant in recent
                if (group, flow, topic, tenant) not in lagging
            ]
        return rows


def publish(report: LagReport, dlq_topics: set[str], tenants: RecentTenants) -> None:
    """Replace every lag series by the report's (synchronously: no scrape sees a mix)."""
    tenant_rows = tenants.update(report)
    for gauge in _LAG_GAUGES:
        gauge.clear()
    for row in report.partitions:
        o = row.offsets
        labels = (row.group, row.flow, o.topic, str(o.partition))
        metrics.CONSUMER_LAG_OFFSETS.labels(*labels).set(o.lag)
        metrics.CONSUMER_COMMITTED_OFFSET.labels(*labels).set(o.position)
        if row.seconds is not None:
            metrics.CONSUMER_LAG_SECONDS.labels(*labels).set(row.seconds)
    for tenant in tenant_rows:
        labels = (tenant.group, tenant.flow, tenant.topic, tenant.tenant)
        metrics.CONSUMER_TENANT_LAG_OFFSETS.labels(*labels).set(tenant.offsets)
        if tenant.seconds is not None:
            metrics.CONSUMER_TENANT_LAG_SECONDS.labels(*labels).set(tenant.seconds)
    for topic, marks in report.topics.items():
        if topic in dlq_topics:
            metrics.DEAD_LETTER_DEPTH.labels(topic).set(marks.depth)
            metrics.DEAD_LETTER_END_OFFSET.labels(topic).set(marks.end_sum)
            continue
        for partition, (_, end) in marks.marks.items():
            metrics.TOPIC_END_OFFSET.labels(topic, str(partition)).set(end)


class JobTextfiles(Collector):
    """The series bounded jobs wrote to their progress files, merged by metric family."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        for path in sorted(self.directory.glob("*.prom")):
            try:
                text = path.read_text()
            except OSError:
                continue  # replaced while listing: the next scrape reads the new one
            for family in text_string_to_metric_families(text):
                seen = families.setdefault(family.name, family)
                if seen is not family:
                    seen.samples.extend(family.samples)
        yield from families.values()


class LagExporter:
    """Polls the broker every `interval_s` and publishes; remembers how the last poll went.

    With no `reader` given, reads run in a child process (soma/lag_poller.py); a reader given
    (tests) is called in a thread of this process.
    """

    def __init__(self, settings: Settings, reader: LagReader | None = None) -> None:
        self.settings = settings
        self.reader = reader
        self.poller = IsolatedPoller(settings) if reader is None else None
        self.groups = plane_groups(settings)
        self.dlqs = dead_letter_topics(settings)
        self.bootstrap = settings.kafka_bootstrap
        self.recent_tenants = RecentTenants(settings.lag_tenant_series)
        self.last_success: float | None = None
        self.last_error: str | None = None
        self.polls = 0
        metrics.LAG_EXPORTER_UP.labels(self.bootstrap).set(0)
        for outcome in ("ok", "failed"):
            metrics.LAG_EXPORTER_POLLS.labels(self.bootstrap, outcome)

    async def _read(self) -> LagReport:
        if self.poller is not None:
            return await self.poller.read(self.groups, self.dlqs)
        assert self.reader is not None
        return await asyncio.to_thread(self.reader.read, self.groups, self.dlqs)

    async def poll(self) -> bool:
        """One poll; True when the broker answered."""
        started = time.perf_counter()
        try:
            report = await self._read()
        except Exception as exc:
            # Whatever one poll hits (broker away, a timeout, a client error, a crash of the
            # poll process), the exporter keeps serving the last values and tries again.
            if self.last_error is None:  # one line per outage, not one per poll
                log.warning("lag poll failed, serving the last values: %s", exc)
            self.last_error = f"{type(exc).__name__}: {exc}"
            metrics.LAG_EXPORTER_UP.labels(self.bootstrap).set(0)
            metrics.LAG_EXPORTER_POLLS.labels(self.bootstrap, "failed").inc()
            return False
        finally:
            self.polls += 1
            elapsed = time.perf_counter() - started
            metrics.LAG_EXPORTER_POLL_SECONDS.labels(self.bootstrap).observe(elapsed)
        publish(report, set(self.dlqs), self.recent_tenants)
        if self.last_error is not None:
            log.info("lag poll succeeded again after: %s", self.last_error)
        self.last_success, self.last_error = report.taken_at_ms / 1000, None
        metrics.LAG_EXPORTER_UP.labels(self.bootstrap).set(1)
        metrics.LAG_EXPORTER_LAST_SUCCESS.labels(self.bootstrap).set(self.last_success)
        metrics.LAG_EXPORTER_POLLS.labels(self.bootstrap, "ok").inc()
        return True

    def close(self) -> None:
        if self.poller is not None:
            self.poller.close()
        if self.reader is not None:
            self.reader.close()

    async def run(self) -> None:
        """Poll forever, one poll every `lag_poll_interval_s` (a slow poll delays the next)."""
        interval = self.settings.lag_poll_interval_s
        while True:
            started = time.monotonic()
            await self.poll()
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))


def create_app(settings: Settings, exporter: LagExporter | None = None) -> Starlette:
    """/metrics (lag series, exporter health, job progress) and /healthz."""
    jobs = CollectorRegistry(auto_describe=False)
    jobs.register(JobTextfiles(job_metrics_dir(settings)))
    state: dict[str, LagExporter] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state["exporter"] = exporter or LagExporter(settings)
        task = asyncio.create_task(state["exporter"].run())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await asyncio.to_thread(state["exporter"].close)

    async def metrics_page(request: Request) -> Response:
        # Rendered on the event loop, like `publish`: a scrape never sees half a poll.
        body = generate_latest(REGISTRY) + generate_latest(jobs)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    async def healthz(request: Request) -> JSONResponse:
        current = state.get("exporter")
        body = {
            "broker_up": bool(current and current.last_error is None and current.last_success),
            "last_success": current.last_success if current else None,
            "last_error": current.last_error if current else None,
            "polls": current.polls if current else 0,
            "groups": [g.group for g in current.groups] if current else [],
        }
        return JSONResponse(body)  # 200 while serving: the broker's state is in the body

    routes = [Route("/metrics", metrics_page), Route("/healthz", healthz)]
    return Starlette(routes=routes, lifespan=lifespan)


def serve(settings: Settings, port: int | None = None) -> None:
    """Run the exporter in the foreground until SIGTERM/SIGINT."""
    import faulthandler

    import uvicorn

    faulthandler.enable()  # a crash inside librdkafka leaves a traceback in the log
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    uvicorn.run(
        create_app(settings),
        host=settings.worker_host,
        port=port or settings.exporter_port(),
        log_level="warning",
    )
