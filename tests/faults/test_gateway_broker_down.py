"""Stopping Kafka makes produce answer 503 and /healthz say down; restarting it recovers."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import httpx
import pytest

from gateway.auth import issue_token
from infra.stack.kafka import kafka_running, start_kafka, stop_kafka
from soma.settings import Settings
from tests.conftest import TEST_JWT_KEYS
from tests.support.kafka import read_records
from tests.support.processes import running_gateway, wait_until
from topics.admin import apply_topics, delete_topics
from topics.registry import TopicRegistry

pytestmark = [pytest.mark.fault, pytest.mark.integration]


@pytest.fixture
def gateway_with_topics(tmp_path) -> Iterator[tuple[str, Settings]]:  # type: ignore[no-untyped-def]
    prefix = f"f{uuid.uuid4().hex[:8]}."
    settings = Settings(
        topic_prefix=prefix, produce_timeout_s=3.0, jwt_keys=TEST_JWT_KEYS, jwt_active_kid="k2"
    )
    specs = [TopicRegistry(prefix).get("conversation.inbound")]
    apply_topics(settings, specs)
    env = {
        "SOMA_TOPIC_PREFIX": prefix,
        "SOMA_PRODUCE_TIMEOUT_S": "3",
        "SOMA_JWT_KEYS": json.dumps(TEST_JWT_KEYS),
        "SOMA_JWT_ACTIVE_KID": "k2",
    }
    try:
        with running_gateway(env, tmp_path / "gateway.log") as base:
            yield base, settings
    finally:
        if not kafka_running(settings):
            start_kafka(settings)
        delete_topics(settings, [s.name for s in specs])


def test_broker_stop_gives_503_and_restart_recovers(gateway_with_topics) -> None:  # type: ignore[no-untyped-def]
    base, settings = gateway_with_topics
    token = issue_token(settings, tenant="t-fault")
    headers = {"Authorization": f"Bearer {token}"}
    body = {"session_id": "s1", "message": "before the outage"}
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        assert client.post("/v1/session/message", json=body).status_code in (200, 202)

        stop_kafka(settings)
        try:
            down = client.post("/v1/session/message", json={**body, "message": "during"})
            assert down.status_code == 503, down.text
            assert int(down.headers["Retry-After"]) >= 1
            health = client.get("/healthz")
            assert health.status_code == 503
            assert health.json()["components"]["kafka"]["status"] == "down"
        finally:
            start_kafka(settings)

        def accepted_again() -> bool:
            response = client.post("/v1/session/message", json={**body, "message": "after"})
            if response.status_code in (200, 202):
                return True
            assert response.status_code == 503, response.text  # never a 500 while recovering
            return False

        # Same gateway process: the producer reconnects by itself.
        wait_until(accepted_again, 90, "produce to succeed after the broker restart", 1.0)
        assert client.get("/healthz").json()["components"]["kafka"]["status"] == "ok"

    # Every 2xx was really stored: "before" and "after" are on the topic, read back.
    topic = TopicRegistry(settings.topic_prefix).get("conversation.inbound").name
    messages = [r.value() for r in read_records(settings, topic, expected=2, timeout_s=30)]
    assert any(b"before the outage" in m for m in messages)
    assert any(b'"after"' in m for m in messages)
