"""The FastAPI application: one producer, one Redis client and one admin client per process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from gateway.backpressure import OutboxBackpressure, running
from gateway.errors import install_error_handlers
from gateway.in_flight import InFlightLimitMiddleware
from gateway.memory_health import MemoryHealth
from gateway.middleware import (
    BodyLimitMiddleware,
    MetricsMiddleware,
    RequestContextMiddleware,
    UnexpectedErrorMiddleware,
)
from gateway.openapi import install_openapi
from gateway.routes import (
    admin,
    agents,
    audit,
    dlq,
    dlq_page,
    events,
    health,
    kafka_status,
    memory,
    memory_health,
    outbox,
    overview,
    overview_page,
    recall,
    recall_stream,
    session,
)
from gateway.routes import state as state_routes
from processors.backpressure import BackpressurePolicy
from processors.memory_health import MEMORY_HEALTH_UPSTREAM
from soma.metrics import (
    GATEWAY_PRODUCE_FAILURES,
    GATEWAY_THROTTLED_REQUESTS,
    PRODUCE_FAILURE_REASONS,
    RECALL_CACHE_LOOKUPS,
    RECALL_CACHE_OUTCOMES,
    THROTTLE_REASONS,
)
from soma.settings import Settings, get_settings
from soma.tracing import configure_tracing
from state.dead_letters import DeadLetters
from state.memory.factory import memory_backend
from state.reads import StateReader
from state.recall_cache import RecallCache, redis_client
from topics.admin import admin_client
from topics.producer import EventProducer
from topics.registry import TopicRegistry


def create_app(settings: Settings | None = None) -> FastAPI:
    """A gateway bound to `settings` (the process-wide settings when None)."""
    settings = settings or get_settings()
    configure_tracing("somastream-gateway")  # once per process; off unless OTEL_* says

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Refuse to serve with a placeholder secret outside dev, before accepting any request.
        settings.check_secrets()
        app.state.producer = EventProducer(
            settings, app.state.registry, queue_name="gateway_producer"
        )
        app.state.kafka_admin = admin_client(settings)
        # Health probes and the recall cache share it; the cache bounds its own calls.
        app.state.redis = redis_client(settings)
        app.state.recall_cache = (
            RecallCache(
                app.state.redis,
                ttl_s=settings.recall_cache_ttl_s,
                timeout_s=settings.recall_cache_timeout_s,
            )
            if settings.recall_cache_ttl_s
            else None  # SOMA_RECALL_CACHE_TTL_S=0: every recall asks the backend
        )
        app.state.state_reader = StateReader(settings)
        app.state.dead_letters = DeadLetters(settings, app.state.state_reader, app.state.producer)
        # Connects on first use: a backend that is down answers recall with 503, not a crash.
        app.state.memory_backend = memory_backend(settings)
        app.state.memory_health = MemoryHealth(
            settings, app.state.state_reader, app.state.memory_backend, MEMORY_HEALTH_UPSTREAM
        )
        app.state.backpressure = OutboxBackpressure(
            app.state.state_reader,
            BackpressurePolicy(tenant_limit=settings.outbox_tenant_limit),
            settings.outbox_poll_interval_s,
        )
        try:
            async with running(app.state.backpressure):
                yield
        finally:
            app.state.memory_health.close()
            await app.state.memory_backend.aclose()
            # Flush what is in flight so accepted requests' records are not dropped on shutdown.
            app.state.producer.close(settings.produce_timeout_s)
            await app.state.redis.aclose()
            await app.state.state_reader.aclose()

    # FastAPIOffline is a FastAPI whose /docs and /redoc load Swagger UI and ReDoc from files
    # shipped in the package, not from a CDN: the docs work on hosts without internet access.
    app = FastAPIOffline(
        title="SomaStream gateway",
        summary="Produce validated events, query stream state, operate the plane.",
        version="0.1.0",
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url="/redoc",
        # Swagger UI would otherwise ask an online validator about the document.
        swagger_ui_parameters={"validatorUrl": None},
    )
    app.state.settings = settings
    app.state.registry = TopicRegistry(settings.topic_prefix)
    app.state.lag_watch = overview.lag_watch(settings)  # read on demand, by the overview page
    _create_counters(app.state.registry)
    install_error_handlers(app)
    # Added innermost first: metrics see every request (413s, 500s and busy 503s included), the
    # request context wraps the in-flight bound, the body limit and the last-resort handler so
    # their answers carry the request id; the in-flight bound refuses before a body is read.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(UnexpectedErrorMiddleware)
    app.add_middleware(InFlightLimitMiddleware, limit=settings.gateway_max_in_flight)
    app.add_middleware(RequestContextMiddleware)
    app.add_middleware(MetricsMiddleware)
    for module in (
        outbox,
        session,
        memory,
        recall,
        recall_stream,
        events,
        state_routes,
        admin,
        kafka_status,
        audit,
        dlq,
        dlq_page,
        overview,
        overview_page,
        health,
        memory_health,
        agents,
    ):
        app.include_router(module.router)
    install_openapi(app, settings)
    return app


def _create_counters(registry: TopicRegistry) -> None:
    """Failure counters at 0 for what can fail: a quiet gateway shows 0, not "no data"."""
    for reason in THROTTLE_REASONS:
        GATEWAY_THROTTLED_REQUESTS.labels(reason=reason)
    for outcome in RECALL_CACHE_OUTCOMES:
        RECALL_CACHE_LOOKUPS.labels(outcome=outcome)
    topics = [registry.get(name).name for name in (*registry.public(), memory.TOPIC)]
    for topic in topics:
        for reason in PRODUCE_FAILURE_REASONS:
            GATEWAY_PRODUCE_FAILURES.labels(topic=topic, reason=reason)
