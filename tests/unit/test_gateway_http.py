"""The HTTP edge without a broker: auth, ids, error bodies and the state route's tenant scoping.

These requests are all answered before anything is produced, so the app runs in-process
without its lifespan (no producer, no Redis): nothing here touches the network.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.errors import field_pointer, schema_rule
from gateway.routes.state import state_reader
from soma.settings import Settings
from tests.conftest import AuthHeaders, SettingsFactory

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture
def settings(settings_factory: SettingsFactory) -> Settings:
    return settings_factory(kafka_bootstrap="127.0.0.1:1")


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        yield client


async def test_request_id_and_trace_are_echoed_even_on_refusals(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/v1/session/message",
        json={"message": "hi"},
        headers={"X-Request-Id": "abc-123", "traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"},
    )
    assert response.status_code == 401
    assert response.headers["x-request-id"] == "abc-123"
    assert response.json()["request_id"] == "abc-123"
    assert response.headers["traceparent"].split("-")[1] == TRACE_ID


async def test_unusable_request_id_is_replaced_and_bad_traceparent_restarts_the_trace(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get(
        "/v1/admin/topics", headers={"X-Request-Id": "has spaces", "traceparent": "garbage"}
    )
    assert response.headers["x-request-id"] != "has spaces"
    assert len(response.headers["x-request-id"]) == 36  # a uuid4
    assert len(response.headers["traceparent"].split("-")[1]) == 32


async def test_auth_comes_before_body_validation(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/memory/batch", json={"items": "not a list"})
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("path", "body", "field", "rule"),
    [
        ("/v1/memory/remember", {}, "/payload", "required"),
        ("/v1/memory/remember", {"payload": {}}, "/payload", "minProperties"),
        ("/v1/memory/remember", {"payload": {"a": 1}, "memory_type": "x"}, "/memory_type", "enum"),
        ("/v1/memory/remember", {"payload": []}, "/payload", "type"),
        (
            "/v1/memory/batch",
            {"items": [{"payload": {"a": 1}}, {"payload": 3}]},
            "/items/1/payload",
            "type",
        ),
        ("/v1/events/tool.requests", [], "/", "type"),
        ("/v1/events/tool.requests", {"events": [{"session_id": "s"}, 7]}, "/events/1", "type"),
        (
            "/v1/events/tool.requests",
            {"session_id": "s", "tool_name": "t", "args": {}},
            "/metadata",
            "required",
        ),
    ],
)
async def test_refusals_name_field_and_rule(
    client: httpx.AsyncClient,
    settings: Settings,
    auth_headers: AuthHeaders,
    path: str,
    body: Any,
    field: str,
    rule: str,
) -> None:
    response = await client.post(path, json=body, headers=auth_headers(settings))
    assert response.status_code == 422, response.text
    assert (response.json()["field"], response.json()["rule"]) == (field, rule)


async def test_agent_header_longer_than_the_schema_allows_is_422(
    client: httpx.AsyncClient, settings: Settings, auth_headers: AuthHeaders
) -> None:
    headers = {**auth_headers(settings), "X-Persona-Id": "p" * 257}
    response = await client.post("/v1/session/message", json={"message": "hi"}, headers=headers)
    assert response.status_code == 422
    assert response.json()["field"] == "/headers/X-Persona-Id"


async def test_a_record_over_the_broker_limit_is_413_before_sending(
    client: httpx.AsyncClient, settings: Settings, auth_headers: AuthHeaders
) -> None:
    event = {"session_id": "s", "tool_name": "t", "metadata": {}, "args": {"blob": "x" * 1_100_000}}
    assert settings.max_body_bytes > 1_200_000  # the body passes; the record would not
    response = await client.post(
        "/v1/events/tool.requests", json={"events": [event]}, headers=auth_headers(settings)
    )
    assert response.status_code == 413, response.text
    assert response.json()["field"] == "/events/0"


async def test_unknown_path_is_a_json_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


async def test_docs_are_served(client: httpx.AsyncClient) -> None:
    assert (await client.get("/docs")).status_code == 200
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert {
        "/v1/session/message",
        "/v1/memory/remember",
        "/v1/memory/batch",
        "/v1/events/{topic}",
        "/healthz",
        "/metrics",
    } <= set(paths)


async def test_state_reads_use_the_token_tenant_only(
    settings: Settings, auth_headers: AuthHeaders
) -> None:
    calls: list[tuple[str, str, str]] = []

    class RecordingReader:
        """Stands in for state.reads.StateReader's contract; its own tests cover the reads."""

        async def read(self, route: str, tenant: str, ident: str) -> dict[str, Any]:
            calls.append((route, tenant, ident))
            return {"tenant": tenant, "session_id": ident, "partition": 1, "count": 3}

    app = create_app(settings)
    app.dependency_overrides[state_reader] = RecordingReader
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        response = await client.get(
            "/v1/state/session-events/s-7?tenant=intruder",
            headers={**auth_headers(settings, "acme"), "X-Tenant": "intruder"},
        )
        assert response.status_code == 200, response.text
        assert response.json()["count"] == 3
        assert "owner" not in response.json()  # tenants never see worker addresses
        canonical = await client.get("/v1/state/session-counts/s-8", headers=auth_headers(settings))
        assert canonical.status_code == 200
    assert calls == [("session-events", "acme", "s-7"), ("session-counts", "acme", "s-8")]


def test_pointers_escape_and_rules_use_json_schema_words() -> None:
    assert field_pointer(("body", "items", 3, "a/b")) == "/items/3/a~1b"
    assert field_pointer(("body",)) == "/"
    assert field_pointer(("path", "topic")) == "/path/topic"
    types_ = ("missing", "extra_forbidden", "string_type", "int_parsing", "literal_error")
    assert [schema_rule(t) for t in types_] == [
        "required",
        "additionalProperties",
        "type",
        "type",
        "enum",
    ]
