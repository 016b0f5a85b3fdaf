"""Bad requests get a 4xx naming the field and rule, and nothing reaches the topic."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import orjson
import pytest

from soma.settings import Settings
from tests.conftest import AuthHeaders, TokenFactory
from tests.integration.conftest import GatewayClient, TopicSetFactory, read_topic
from topics.admin import high_watermarks
from topics.registry import TopicRegistry

pytestmark = pytest.mark.integration


@pytest.fixture
async def gateway(
    topic_set_factory: TopicSetFactory, gateway_client: GatewayClient
) -> AsyncIterator[tuple[httpx.AsyncClient, Settings, TopicRegistry]]:
    settings, registry = topic_set_factory(
        ["conversation.inbound", "memory.requests", "tool.requests", "agent.audit.v1"],
        max_body_bytes=256 * 1024,
    )
    async with gateway_client(settings) as client:
        yield client, settings, registry
    # Whatever a test sent, a refusal must not have produced a single record.
    names = [registry.get(n).name for n in ("conversation.inbound", "memory.requests")]
    marks = high_watermarks(settings, names)
    assert all(sum(marks[name].values()) == 0 for name in names), marks


@pytest.mark.parametrize(
    ("body", "field", "rule"),
    [
        ({}, "/message", "required"),
        ({"message": "hi", "role": "robot"}, "/role", "enum"),
        ({"message": "hi", "colour": "blue"}, "/colour", "additionalProperties"),
        ({"message": 42}, "/message", "type"),
        ({"message": "x" * 65537}, "/message", "maxLength"),
        ({"message": "hi", "attachments": [""]}, "/attachments/0", "minLength"),
    ],
)
async def test_session_message_422_names_field_and_rule(
    gateway: tuple[httpx.AsyncClient, Settings, TopicRegistry],
    auth_headers: AuthHeaders,
    body: dict[str, object],
    field: str,
    rule: str,
) -> None:
    client, settings, _ = gateway
    response = await client.post("/v1/session/message", json=body, headers=auth_headers(settings))
    assert response.status_code == 422, response.text
    error = response.json()
    assert (error["error"], error["field"], error["rule"]) == ("validation_failed", field, rule)
    assert field in error["message"]
    assert error["request_id"] == response.headers["x-request-id"]


async def test_malformed_json_is_400_not_500(
    gateway: tuple[httpx.AsyncClient, Settings, TopicRegistry], auth_headers: AuthHeaders
) -> None:
    client, settings, _ = gateway
    response = await client.post(
        "/v1/session/message",
        content=b'{"message": "unterminated',
        headers={**auth_headers(settings), "content-type": "application/json"},
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "malformed_json"


async def test_missing_expired_and_foreign_tokens_are_401(
    gateway: tuple[httpx.AsyncClient, Settings, TopicRegistry], token_factory: TokenFactory
) -> None:
    client, settings, _ = gateway
    foreign = Settings(jwt_keys={"k2": "another-secret-" + "c" * 32}, jwt_active_kid="k2")
    unknown_kid = Settings(jwt_keys={"k9": "k9-secret-" + "d" * 32}, jwt_active_kid="k9")
    wrong_audience = settings.model_copy(update={"jwt_audience": "someone-else"})
    cases = {
        "missing": {},
        "not bearer": {"Authorization": "Basic dXNlcjpwYXNz"},
        "garbage": {"Authorization": "Bearer not.a.jwt"},
        "expired": {"Authorization": f"Bearer {token_factory(settings, ttl_s=-60)}"},
        "bad signature": {"Authorization": f"Bearer {token_factory(foreign)}"},
        "unknown kid": {"Authorization": f"Bearer {token_factory(unknown_kid)}"},
        "wrong aud": {"Authorization": f"Bearer {token_factory(wrong_audience)}"},
    }
    for case, headers in cases.items():
        response = await client.post("/v1/session/message", json={"message": "hi"}, headers=headers)
        assert response.status_code == 401, (case, response.text)
        assert response.headers["www-authenticate"].startswith("Bearer"), case
        assert response.json()["error"] == "unauthorized", case
    expired = cases["expired"]
    response = await client.post("/v1/session/message", json={"message": "hi"}, headers=expired)
    assert "expired" in response.json()["message"]


async def test_admin_route_needs_the_admin_role(
    gateway: tuple[httpx.AsyncClient, Settings, TopicRegistry], auth_headers: AuthHeaders
) -> None:
    client, settings, registry = gateway
    assert (await client.get("/v1/admin/topics")).status_code == 401
    forbidden = await client.get("/v1/admin/topics", headers=auth_headers(settings))
    assert forbidden.status_code == 403, forbidden.text
    assert forbidden.json()["error"] == "forbidden"
    allowed = await client.get("/v1/admin/topics", headers=auth_headers(settings, roles=["admin"]))
    assert allowed.status_code == 200, allowed.text
    topics = {t["topic"]: t for t in allowed.json()["topics"]}
    inbound = topics[registry.get("conversation.inbound").name]
    assert inbound["high_watermarks"] == {str(p): 0 for p in range(6)}
    # Registered but not created in this test's topic set: listed, without watermarks.
    assert topics[registry.get("memory.wal").name]["high_watermarks"] is None
    # The admin read is audited (only the allowed one: refusals reach no handler).
    audited = read_topic(settings, registry.get("agent.audit.v1").name, count=2, timeout_s=5)
    assert len(audited) == 1
    event = orjson.loads(audited[0].value())
    assert (event["action"], event["actor"], event["tenant"]) == ("topics.list", "test", "acme")
    assert event["request_id"] == allowed.headers["x-request-id"]


async def test_unknown_and_internal_topics_are_refused(
    gateway: tuple[httpx.AsyncClient, Settings, TopicRegistry], auth_headers: AuthHeaders
) -> None:
    client, settings, _ = gateway
    headers = auth_headers(settings)
    unknown = await client.post("/v1/events/no.such.topic", json={}, headers=headers)
    assert unknown.status_code == 404, unknown.text
    assert unknown.json()["error"] == "unknown_topic"
    assert "conversation.inbound" in unknown.json()["public_topics"]
    internal = await client.post("/v1/events/memory.requests", json={}, headers=headers)
    assert internal.status_code == 403, internal.text
    assert internal.json()["error"] == "topic_not_public"


async def test_a_tenant_other_than_the_token_is_refused(
    gateway: tuple[httpx.AsyncClient, Settings, TopicRegistry], auth_headers: AuthHeaders
) -> None:
    client, settings, registry = gateway
    event = {"session_id": "s", "tool_name": "t", "args": {}, "metadata": {}}
    response = await client.post(
        "/v1/events/tool.requests",
        json={"events": [event, {**event, "tenant": "intruder"}]},
        headers=auth_headers(settings, "acme"),
    )
    assert response.status_code == 422, response.text
    assert (response.json()["field"], response.json()["rule"]) == ("/events/1/tenant", "tenant")
    topic = registry.get("tool.requests").name
    assert sum(high_watermarks(settings, [topic])[topic].values()) == 0


async def test_batch_of_501_is_413_before_item_validation(
    gateway: tuple[httpx.AsyncClient, Settings, TopicRegistry], auth_headers: AuthHeaders
) -> None:
    client, settings, _ = gateway
    items = [{"payload": {"n": i}} for i in range(500)] + [{"not": "valid"}]
    response = await client.post(
        "/v1/memory/batch", json={"items": items}, headers=auth_headers(settings)
    )
    assert response.status_code == 413, response.text
    assert response.json() | {"request_id": None} == {
        "error": "too_many_items",
        "message": "a batch holds at most 500 items, got 501; split it",
        "field": "/items",
        "limit": 500,
        "count": 501,
        "request_id": None,
    }


async def test_oversized_body_is_413_by_length_and_by_stream(
    gateway: tuple[httpx.AsyncClient, Settings, TopicRegistry], auth_headers: AuthHeaders
) -> None:
    client, settings, _ = gateway
    headers = {**auth_headers(settings), "content-type": "application/json"}
    big = b'{"message": "' + b"x" * (settings.max_body_bytes + 10) + b'"}'
    declared = await client.post("/v1/session/message", content=big, headers=headers)
    assert declared.status_code == 413, declared.text
    assert declared.json()["limit_bytes"] == settings.max_body_bytes

    async def chunks() -> AsyncIterator[bytes]:
        # No Content-Length: only counting the streamed bytes can catch this one.
        for start in range(0, len(big), 8192):
            yield big[start : start + 8192]

    streamed = await client.post("/v1/session/message", content=chunks(), headers=headers)
    assert streamed.status_code == 413, streamed.text
    assert streamed.json()["error"] == "payload_too_large"
