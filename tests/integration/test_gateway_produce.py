"""Gateway → real Kafka: what a 2xx promises is on the topic, keyed, partitioned, with headers."""

from __future__ import annotations

import uuid

import orjson
import pytest
from confluent_kafka import Message

from processors.partitioning import partition_for
from processors.tracing import parse_traceparent
from tests.conftest import AuthHeaders
from tests.integration.conftest import GatewayClient, KafkaReader, TopicSetFactory
from topics.admin import high_watermarks

pytestmark = pytest.mark.integration

TENANT = "acme"
INCOMING_TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def _headers(message: Message) -> dict[str, str]:
    return {k: v.decode() for k, v in message.headers() or []}


async def test_session_message_lands_keyed_partitioned_and_traced(
    topic_set_factory: TopicSetFactory,
    gateway_client: GatewayClient,
    auth_headers: AuthHeaders,
    kafka_reader: KafkaReader,
) -> None:
    settings, registry = topic_set_factory(["conversation.inbound"])
    request_id = f"req-{uuid.uuid4().hex}"
    headers = {
        **auth_headers(settings, TENANT),
        "X-Request-Id": request_id,
        "traceparent": INCOMING_TRACE,
        "X-Universe-Id": "universe-7",
        "X-Persona-Id": "persona-9",
        "X-Agent-Profile": "researcher",
    }
    body = {"session_id": "s-42", "message": "hello plane", "metadata": {"agent_profile": "own"}}
    async with gateway_client(settings) as client:
        response = await client.post("/v1/session/message", json=body, headers=headers)

    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["session_id"] == "s-42"
    assert accepted["topic"] == registry.get("conversation.inbound").name
    assert response.headers["x-request-id"] == request_id
    span = parse_traceparent(response.headers["traceparent"])
    assert span is not None and span.trace_id == INCOMING_TRACE.split("-")[1]
    assert span.span_id != INCOMING_TRACE.split("-")[2]  # the gateway's own child span

    (record,) = kafka_reader(settings, accepted["topic"], count=1)
    key = f"{TENANT}/s-42"
    assert record.key() == key.encode()
    assert record.partition() == accepted["partition"] == partition_for(key.encode(), 6)
    assert record.offset() == accepted["offset"]
    record_headers = _headers(record)
    assert record_headers["tenant"] == TENANT
    assert record_headers["request_id"] == request_id
    assert record_headers["traceparent"] == response.headers["traceparent"]
    assert record_headers["schema"] == "conversation_event"
    event = orjson.loads(record.value())
    assert event["event_id"] == accepted["event_id"]
    assert event["tenant"] == TENANT and event["role"] == "user" and event["version"] == "sa01-v1"
    assert event["request_id"] == request_id
    assert event["trace_context"] == {"traceparent": response.headers["traceparent"]}
    assert event["persona_id"] == "persona-9"
    # Headers fill only what the body left empty: the body's agent_profile wins.
    assert event["metadata"] == {
        "universe_id": "universe-7",
        "persona_id": "persona-9",
        "agent_profile": "own",
    }
    assert event["occurred_at"].endswith("Z")


async def test_session_message_without_session_gets_a_new_one(
    topic_set_factory: TopicSetFactory,
    gateway_client: GatewayClient,
    auth_headers: AuthHeaders,
    kafka_reader: KafkaReader,
) -> None:
    settings, _ = topic_set_factory(["conversation.inbound"])
    async with gateway_client(settings) as client:
        response = await client.post(
            "/v1/session/message", json={"message": "hi"}, headers=auth_headers(settings, TENANT)
        )
    assert response.status_code == 202, response.text
    session_id = response.json()["session_id"]
    assert uuid.UUID(session_id)
    (record,) = kafka_reader(settings, response.json()["topic"])
    assert record.key() == f"{TENANT}/{session_id}".encode()
    assert response.headers["x-request-id"] == _headers(record)["request_id"]


async def test_remember_derives_the_same_idempotency_key_for_a_retry(
    topic_set_factory: TopicSetFactory,
    gateway_client: GatewayClient,
    auth_headers: AuthHeaders,
    kafka_reader: KafkaReader,
) -> None:
    settings, registry = topic_set_factory(["memory.requests"])
    write = {"session_id": "s-1", "payload": {"fact": "the sky is blue"}, "memory_type": "semantic"}
    async with gateway_client(settings) as client:
        headers = auth_headers(settings, TENANT)
        first = await client.post("/v1/memory/remember", json=write, headers=headers)
        retry = await client.post("/v1/memory/remember", json=write, headers=headers)
        other = await client.post(
            "/v1/memory/remember",
            json={**write, "payload": {"fact": "grass is green"}},
            headers=headers,
        )
        explicit = await client.post(
            "/v1/memory/remember",
            json={**write, "idempotency_key": "client-key-0001"},
            headers=headers,
        )
    for response in (first, retry, other, explicit):
        assert response.status_code == 202, response.text
    assert first.json()["idempotency_key"] == retry.json()["idempotency_key"]
    assert first.json()["event_id"] != retry.json()["event_id"]
    assert other.json()["idempotency_key"] != first.json()["idempotency_key"]
    assert explicit.json()["idempotency_key"] == "client-key-0001"

    records = kafka_reader(settings, registry.get("memory.requests").name, count=4)
    assert len(records) == 4
    by_event = {orjson.loads(r.value())["event_id"]: r for r in records}
    record = by_event[first.json()["event_id"]]
    assert record.key() == f"{TENANT}/s-1".encode()
    assert _headers(record)["idempotency_key"] == first.json()["idempotency_key"]
    assert _headers(record)["schema"] == "memory_write"
    event = orjson.loads(record.value())
    assert event["namespace"] == settings.namespace
    assert event["payload"] == {"fact": "the sky is blue"}


async def test_batch_is_all_or_nothing(
    topic_set_factory: TopicSetFactory,
    gateway_client: GatewayClient,
    auth_headers: AuthHeaders,
    kafka_reader: KafkaReader,
) -> None:
    settings, registry = topic_set_factory(["memory.requests"])
    topic = registry.get("memory.requests").name
    items = [{"session_id": f"s-{i}", "payload": {"n": i}} for i in range(5)]
    async with gateway_client(settings) as client:
        headers = auth_headers(settings, TENANT)
        bad = await client.post(
            "/v1/memory/batch",
            headers=headers,
            json={"items": [*items[:3], {"payload": {}}, items[4]]},
        )
        assert bad.status_code == 422, bad.text
        assert bad.json()["field"] == "/items/3/payload"
        assert bad.json()["rule"] == "minProperties"
        # Nothing of the refused batch reached the topic.
        assert sum(high_watermarks(settings, [topic])[topic].values()) == 0

        good = await client.post("/v1/memory/batch", json={"items": items}, headers=headers)
    assert good.status_code == 202, good.text
    results = good.json()["results"]
    assert len(results) == 5 and len({r["idempotency_key"] for r in results}) == 5
    records = kafka_reader(settings, topic, count=5)
    assert sorted(orjson.loads(r.value())["payload"]["n"] for r in records) == [0, 1, 2, 3, 4]


async def test_events_to_a_public_topic_single_and_batch(
    topic_set_factory: TopicSetFactory,
    gateway_client: GatewayClient,
    auth_headers: AuthHeaders,
    kafka_reader: KafkaReader,
) -> None:
    settings, registry = topic_set_factory(["tool.requests"])
    topic = registry.get("tool.requests").name

    def event(n: int) -> dict[str, object]:
        return {
            "event_id": str(uuid.uuid4()),
            "session_id": "s-9",
            "tool_name": "search",
            "args": {"q": n},
            "metadata": {},
        }

    async with gateway_client(settings) as client:
        headers = {**auth_headers(settings, TENANT), "X-Universe-Id": "u-1"}
        without_id = {k: v for k, v in event(0).items() if k != "event_id"}
        single = await client.post("/v1/events/tool.requests", json=without_id, headers=headers)
        batch = await client.post(
            "/v1/events/tool.requests",
            json={"events": [event(1), {**event(2), "tenant": TENANT}]},
            headers=headers,
        )
    assert single.status_code == 202, single.text
    assert single.json()["topic"] == topic
    assert batch.status_code == 202, batch.text
    assert [r["partition"] for r in batch.json()["results"]] == [single.json()["partition"]] * 2

    records = kafka_reader(settings, topic, count=3)
    events = sorted((orjson.loads(r.value()) for r in records), key=lambda e: e["args"]["q"])
    assert [e["tenant"] for e in events] == [TENANT] * 3  # stamped from the token
    assert events[0]["metadata"] == {"universe_id": "u-1"}
    assert events[0]["event_id"] == single.json()["event_id"]  # generated at the edge
    assert [e["event_id"] for e in events[1:]] == [r["event_id"] for r in batch.json()["results"]]
    assert all(r.key() == f"{TENANT}/s-9".encode() for r in records)
