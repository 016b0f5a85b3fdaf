"""The gateway's producer queue is bounded: an unreachable broker gives 503 + Retry-After in time.

A real gateway process whose producer queue holds 3 records, bootstrapped through a gate that
starts closed (the broker cannot be found), gets bursts of concurrent requests; then the gate
opens and the same process delivers to the real broker.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from infra.stack.ports import parse_address
from soma.settings import Settings
from tests.conftest import TEST_JWT_KEYS, AuthHeaders
from tests.integration.conftest import KafkaReader, TopicSetFactory
from tests.support.processes import running_gateway
from tests.support.tcp_gate import TcpGate

pytestmark = pytest.mark.integration

QUEUE_BOUND = 3
PRODUCE_TIMEOUT_S = 2.0
# The gateway's wait is produce_timeout_s + 2 s of grace (gateway/produce.py); the rest is slack
# for a loaded two-core box.
LONGEST_ANSWER_S = PRODUCE_TIMEOUT_S + 2.0 + 2.0
BURST = 12


@pytest.fixture
def gated_gateway(
    topic_set_factory: TopicSetFactory, tmp_path: Path
) -> Iterator[tuple[str, Settings, TcpGate]]:
    settings, _ = topic_set_factory(["conversation.inbound"])
    broker = parse_address(settings.kafka_bootstrap, 9092)
    gate = TcpGate((broker.host, broker.port))
    env = {
        "SOMA_KAFKA_BOOTSTRAP": gate.address,
        "SOMA_TOPIC_PREFIX": settings.topic_prefix,
        "SOMA_PRODUCER_QUEUE_MAX_MESSAGES": str(QUEUE_BOUND),
        "SOMA_PRODUCE_TIMEOUT_S": str(PRODUCE_TIMEOUT_S),
        "SOMA_JWT_KEYS": json.dumps(TEST_JWT_KEYS),
        "SOMA_JWT_ACTIVE_KID": "k2",
    }
    try:
        with running_gateway(env, tmp_path / "gateway.log") as base:
            yield base, settings, gate
    finally:
        gate.close()


def _metrics(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{base}/metrics", timeout=10).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _queue(base: str, metric: str) -> float:
    return _metrics(base)[(metric, (("queue", "gateway_producer"),))]


async def _burst(
    client: httpx.AsyncClient, headers: dict[str, str], tag: str
) -> list[tuple[httpx.Response, float]]:
    async def one(i: int) -> tuple[httpx.Response, float]:
        started = time.monotonic()
        body = {"session_id": f"s-{i}", "message": f"{tag} {i}"}
        response = await client.post("/v1/session/message", json=body, headers=headers)
        return response, time.monotonic() - started

    return await asyncio.gather(*(one(i) for i in range(BURST)))


def _assert_backed_off(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert int(response.headers["Retry-After"]) >= 1
    assert response.json()["error"] == "broker_unavailable"


async def test_full_queue_answers_503_in_time_and_recovers(
    gated_gateway: tuple[str, Settings, TcpGate],
    auth_headers: AuthHeaders,
    kafka_reader: KafkaReader,
) -> None:
    base, settings, gate = gated_gateway
    headers = auth_headers(settings, "acme")
    assert _queue(base, "soma_queue_capacity") == QUEUE_BOUND

    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        # Broker unreachable: 3 records wait in the queue until their timeout, the rest are
        # refused at once. Every answer is a 503 with Retry-After, none later than the timeout.
        answers = await _burst(client, headers, "outage")
        for response, elapsed in answers:
            _assert_backed_off(response)
            assert elapsed < LONGEST_ANSWER_S, f"answered after {elapsed:.1f}s"
        refused = [r for r, _ in answers if "queue is full" in r.json()["message"]]
        assert len(refused) >= BURST - QUEUE_BOUND, [r.json()["message"] for r, _ in answers]
        high = _queue(base, "soma_queue_high_water")
        assert 1 <= high <= QUEUE_BOUND

        # The broker becomes reachable: the same process delivers again.
        gate.open()

        async def accepted() -> bool:
            response = await client.post(
                "/v1/session/message",
                json={"session_id": "s-r", "message": "probe"},
                headers=headers,
            )
            if response.status_code == 503:
                return False
            assert response.status_code == 202, response.text  # never a 500 while recovering
            return True

        deadline = time.monotonic() + 60
        while not await accepted():
            assert time.monotonic() < deadline, "produce did not succeed after the gate opened"
            await asyncio.sleep(0.5)

        # A burst against the live broker: each request is accepted or told to back off.
        answers = await _burst(client, headers, "live")
        statuses = [r.status_code for r, _ in answers]
        assert set(statuses) <= {202, 503}, statuses
        assert 202 in statuses, statuses
        for response, _ in answers:
            if response.status_code == 503:
                _assert_backed_off(response)

    metrics = _metrics(base)
    assert metrics[("soma_queue_high_water", (("queue", "gateway_producer"),))] <= QUEUE_BOUND
    server_errors = {
        labels: value
        for (name, labels), value in metrics.items()
        if name == "soma_gateway_requests_total" and value
        if dict(labels)["status"].startswith("5") and dict(labels)["status"] != "503"
    }
    assert not server_errors

    # Every 202 is on the topic: the probe plus the live burst's accepted requests.
    topic = settings.topic_prefix + "conversation.inbound"
    expected = 1 + statuses.count(202)
    records = kafka_reader(settings, topic, count=expected + 1, timeout_s=10)
    messages = sorted(r.value() for r in records)
    assert len(records) == expected, messages
    assert not any(b"outage" in m for m in messages)
