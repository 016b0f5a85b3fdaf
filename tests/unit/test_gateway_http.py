"""The HTTP edge without a broker: auth, ids, error bodies and the state route's tenant scoping.

These requests are all answered before anything is produced, so the app runs in-process
without its lifespan (no producer, no Redis): nothing here touches the network.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest

from gateway.app import create_app
from gateway.errors import field_pointer, schema_rule
from gateway.routes.state import state_reader
from soma.settings import Settings
from tests.conftest import AuthHeaders, SettingsFactory
from tests.support.hostile import CASES, Hostile

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


# --- hostile input: every client mistake is a 4xx naming field and rule -------------------------


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
async def test_hostile_bodies_are_4xx_naming_field_and_rule(
    client: httpx.AsyncClient, settings: Settings, auth_headers: AuthHeaders, case: Hostile
) -> None:
    headers = {**auth_headers(settings), "content-type": "application/json"}
    response = await client.post(case.path, content=case.body, headers=headers)
    assert response.status_code == case.status, response.text
    error = response.json()
    if case.rule is not None:
        assert error["rule"] == case.rule
        assert f"(rule: {case.rule})" in error["message"]
    if case.field is not None:
        assert error["field"] == case.field
    assert "errors" not in error  # never a list of a million errors


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1"],
)
async def test_a_body_that_is_not_json_is_415(
    client: httpx.AsyncClient, settings: Settings, auth_headers: AuthHeaders, content_type: str
) -> None:
    headers = {**auth_headers(settings), "content-type": content_type}
    response = await client.post("/v1/session/message", content=b'{"message":"a"}', headers=headers)
    assert response.status_code == 415, response.text
    assert response.json()["error"] == "unsupported_media_type"


async def test_the_unknown_topic_404_does_not_echo_a_hostile_name(
    client: httpx.AsyncClient, settings: Settings, auth_headers: AuthHeaders
) -> None:
    headers = auth_headers(settings)
    long_name = "x" * 5000
    response = await client.post(f"/v1/events/{long_name}", json={}, headers=headers)
    assert response.status_code == 404
    assert long_name not in response.text and len(response.content) < 1000
    assert response.json()["topic"] is None
    plain = await client.post("/v1/events/no.such.topic", json={}, headers=headers)
    assert plain.json()["topic"] == "no.such.topic"


async def test_an_uppercase_traceparent_starts_a_new_trace(client: httpx.AsyncClient) -> None:
    upper = f"00-{TRACE_ID.upper()}-00F067AA0BA902B7-01"
    response = await client.get("/v1/admin/topics", headers={"traceparent": upper})
    assert response.headers["traceparent"].split("-")[1] not in (TRACE_ID, TRACE_ID.upper())
    lower = await client.get("/v1/admin/topics", headers={"traceparent": upper.lower()})
    assert lower.headers["traceparent"].split("-")[1] == TRACE_ID


async def test_a_token_living_longer_than_the_cap_is_401(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    claims = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": "s",
        "tenant": "acme",
        "exp": 10**22 * 31_536_000,  # the year 10^22
    }
    forever = jwt.encode(claims, settings.jwt_keys["k2"], algorithm="HS256", headers={"kid": "k2"})
    response = await client.post(
        "/v1/session/message",
        json={"message": "hi"},
        headers={"Authorization": f"Bearer {forever}"},
    )
    assert response.status_code == 401
    assert "longer than" in response.json()["message"]


async def test_an_unexpected_error_is_a_json_500_that_keeps_the_connection(
    settings: Settings,
) -> None:
    app = create_app(settings)

    async def broken() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/broken", broken)
    # raise_app_exceptions: the transport raises whatever escapes the app, which is what made
    # uvicorn drop the keep-alive connection after answering.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=True)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        response = await client.get("/broken", headers={"X-Request-Id": "req-500"})
    assert response.status_code == 500
    assert response.json() == {
        "error": "internal_error",
        "message": "unexpected server error; quote the request_id",
        "request_id": "req-500",
    }


async def test_openapi_documents_security_statuses_and_the_event_schemas_constraints(
    client: httpx.AsyncClient,
) -> None:
    document = (await client.get("/openapi.json")).json()
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    paths = document["paths"]
    for path in ("/v1/session/message", "/v1/memory/remember", "/v1/events/tool.requests"):
        operation = paths[path]["post"]
        assert operation["security"] == [{"bearer": []}]
        assert {"202", "400", "401", "413", "415", "422", "503"} <= set(operation["responses"])
        error = operation["responses"]["422"]["content"]["application/json"]["schema"]
        assert error == {"$ref": "#/components/schemas/ErrorBody"}
    assert {"401", "403", "404"} <= set(paths["/v1/events/{topic}"]["post"]["responses"])
    schemas = document["components"]["schemas"]
    message = schemas["SessionMessage"]["properties"]
    assert message["attachments"]["maxItems"] == 256
    assert message["attachments"]["items"]["minLength"] == 1
    assert message["session_id"]["minLength"] == 1
    assert schemas["MemoryWrite"]["properties"]["payload"]["minProperties"] == 1
    inbound = schemas["Events_conversation_inbound"]["anyOf"][0]
    assert set(inbound["required"]) == {"session_id", "role", "message"}  # the rest is stamped
    assert inbound["properties"]["tenant"]["readOnly"] is True
