"""Health fan-out, metrics, state reads and an unreachable broker, against the real stack."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from prometheus_client import REGISTRY

from soma.settings import Settings
from tests.conftest import AuthHeaders, SettingsFactory
from tests.integration.conftest import GatewayClient, TopicSetFactory

pytestmark = pytest.mark.integration

CLOSED_PORT = "127.0.0.1:1"  # nothing listens on port 1: connections are refused at once


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"ok": self.path == "/health"}).encode()
        self.send_response(200 if self.path == "/health" else 404)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def memory_service() -> Iterator[str]:
    """A real HTTP server answering GET /health like the memory service does."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


async def test_healthz_reports_every_dependency_ok(
    stack_ready: Settings,
    settings_factory: SettingsFactory,
    gateway_client: GatewayClient,
    memory_service: str,
) -> None:
    settings = settings_factory(base_url=memory_service)
    async with gateway_client(settings) as client:
        response = await client.get("/healthz")
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["status"] == "ok", report
    assert set(report["components"]) == {"kafka", "redis", "postgres", "memory_service"}
    for component in report["components"].values():
        assert component["status"] == "ok" and component["error"] is None
        assert 0 <= component["latency_ms"] < 1000 * settings.health_timeout_s


async def test_memory_service_down_alone_only_degrades(
    stack_ready: Settings, settings_factory: SettingsFactory, gateway_client: GatewayClient
) -> None:
    settings = settings_factory(base_url=f"http://{CLOSED_PORT}")
    async with gateway_client(settings) as client:
        response = await client.get("/healthz")
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["status"] == "degraded"
    assert report["components"]["memory_service"]["status"] == "down"
    assert report["components"]["memory_service"]["error"]
    assert report["components"]["kafka"]["status"] == "ok"


async def test_redis_down_alone_only_degrades(
    stack_ready: Settings, settings_factory: SettingsFactory, gateway_client: GatewayClient
) -> None:
    # Redis holds only the recall cache: without it recalls are answered uncached
    # (tests/integration/test_gateway_recall.py), so the gateway stays in rotation.
    settings = settings_factory(redis_url=f"redis://{CLOSED_PORT}/0")
    async with gateway_client(settings) as client:
        response = await client.get("/healthz")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "degraded"
    components = response.json()["components"]
    assert components["redis"]["status"] == "down" and components["redis"]["error"]
    assert components["postgres"]["status"] == "ok"
    assert "memory_service" not in components  # not configured, not probed


async def test_unreachable_broker_gives_503_with_retry_after_in_time(
    stack_ready: Settings,
    settings_factory: SettingsFactory,
    gateway_client: GatewayClient,
    auth_headers: AuthHeaders,
) -> None:
    settings = settings_factory(kafka_bootstrap=CLOSED_PORT, produce_timeout_s=2.0)
    topic = f"{settings.topic_prefix}conversation.inbound"
    failures = {"topic": topic, "reason": "broker_unavailable"}
    before = REGISTRY.get_sample_value("soma_gateway_produce_failures_total", failures) or 0.0
    async with gateway_client(settings) as client:
        started = time.monotonic()
        response = await client.post(
            "/v1/session/message", json={"message": "into the void"}, headers=auth_headers(settings)
        )
        elapsed = time.monotonic() - started
        health = await client.get("/healthz")
    assert response.status_code == 503, response.text
    assert int(response.headers["retry-after"]) >= 1
    assert response.json()["error"] == "broker_unavailable"
    assert elapsed < settings.produce_timeout_s + 2.5
    after = REGISTRY.get_sample_value("soma_gateway_produce_failures_total", failures)
    assert after == before + 1
    assert health.status_code == 503
    assert health.json()["components"]["kafka"]["status"] == "down"


async def test_metrics_expose_the_gateway_metrics(
    topic_set_factory: TopicSetFactory, gateway_client: GatewayClient, auth_headers: AuthHeaders
) -> None:
    settings, registry = topic_set_factory(["conversation.inbound"])
    async with gateway_client(settings) as client:
        accepted = await client.post(
            "/v1/session/message", json={"message": "count me"}, headers=auth_headers(settings)
        )
        assert accepted.status_code == 202, accepted.text
        await client.get("/healthz")
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    for name in (
        "soma_gateway_requests_total",
        "soma_gateway_request_seconds_bucket",
        "soma_gateway_produced_records_total",
        "soma_gateway_component_health",
        "soma_gateway_health_check_seconds_bucket",
    ):
        assert name in text, name
    topic = registry.get("conversation.inbound").name
    assert f'soma_gateway_produced_records_total{{topic="{topic}"}} 1.0' in text
    # Labels carry the route template, never raw ids.
    assert 'route="/v1/session/message"' in text


async def test_session_events_without_a_worker_is_503_with_retry_after(
    topic_set_factory: TopicSetFactory, gateway_client: GatewayClient, auth_headers: AuthHeaders
) -> None:
    settings, _ = topic_set_factory(["conversation.inbound"])
    async with gateway_client(settings) as client:
        response = await client.get("/v1/state/session-events/s-1", headers=auth_headers(settings))
        unauthenticated = await client.get("/v1/state/session-events/s-1")
    assert response.status_code == 503, response.text
    assert int(response.headers["retry-after"]) >= 1
    assert response.json()["error"] == "state_unavailable"
    assert unauthenticated.status_code == 401
