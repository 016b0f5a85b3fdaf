"""GET /v1/memory/recall/stream over real HTTP (uvicorn) and Postgres, read by gateway/client.py."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from gateway.client import RecallStreamError, recall_stream
from processors.memory_keys import MemoryScope
from soma.settings import Settings
from tests.conftest import TEST_JWT_KEYS, AuthHeaders, SettingsFactory
from tests.integration.conftest import GatewayClient
from tests.integration.test_gateway_recall import remember
from tests.support.processes import running_gateway

pytestmark = pytest.mark.integration


def _fixed(hit: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in hit.items() if name != "score"}


async def test_stream_sends_the_hits_recall_answers_then_a_summary(
    memory_schema: Settings,
    settings_factory: SettingsFactory,
    auth_headers: AuthHeaders,
    tmp_path: Path,
) -> None:
    settings = settings_factory()
    tenant = f"r{uuid.uuid4().hex[:10]}"
    scope = MemoryScope(tenant, settings.namespace)
    for text in ("a heron at dawn", "a heron at dusk", "grey heron dawn flight", "no bird here"):
        await remember(settings, scope, text, "s1")
    env = {
        "SOMA_TOPIC_PREFIX": settings.topic_prefix,
        "SOMA_JWT_KEYS": json.dumps(TEST_JWT_KEYS),
        "SOMA_JWT_ACTIVE_KID": "k2",
    }
    headers = auth_headers(settings, tenant)
    with running_gateway(env, tmp_path / "gateway.log") as base:
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:
            plain = await client.get(
                "/v1/memory/recall", params={"query": "heron dawn", "top_k": 5}
            )
            assert plain.status_code == 200, plain.text
            streamed = [hit async for hit in recall_stream(client, "heron dawn", top_k=5)]
            assert len(streamed) == 3
            # Same hits, order and shape; scores decay with age between the two calls.
            answered = plain.json()["results"]
            assert [_fixed(hit) for hit in streamed] == [_fixed(hit) for hit in answered]
            for hit, same in zip(streamed, answered, strict=True):
                assert hit["score"] == pytest.approx(same["score"], rel=1e-3)

            raw = await client.get("/v1/memory/recall/stream", params={"query": "heron dawn"})
            assert raw.status_code == 200
            assert raw.headers["content-type"] == "application/x-ndjson"
            lines = [orjson.loads(line) for line in raw.text.splitlines()]
            assert [next(iter(line)) for line in lines] == ["result"] * 3 + ["summary"]
            assert lines[-1]["summary"] == {
                "count": 3,
                "namespace": settings.namespace,
                "universe": "default",
            }

            assert [hit async for hit in recall_stream(client, "albatross")] == []

            refused = recall_stream(client, "heron", top_k=51)
            with pytest.raises(RecallStreamError) as caught:
                await anext(refused)
            assert (caught.value.status, caught.value.error) == (422, "validation_failed")


async def test_stream_refuses_bad_parameters_and_answers_503_when_the_backend_is_down(
    stack_ready: Settings,
    settings_factory: SettingsFactory,
    gateway_client: GatewayClient,
    auth_headers: AuthHeaders,
) -> None:
    settings = settings_factory()
    async with gateway_client(settings) as client:
        headers = auth_headers(settings, "acme")
        refused = await client.get(
            "/v1/memory/recall/stream", params={"query": "x", "namespace": "a/b"}, headers=headers
        )
        assert refused.status_code == 422, refused.text
        assert (refused.json()["field"], refused.json()["rule"]) == ("/query/namespace", "scope")
        unauthenticated = await client.get("/v1/memory/recall/stream", params={"query": "x"})
        assert unauthenticated.status_code == 401

    down = settings_factory(postgres_dsn="postgresql://soma:soma@127.0.0.1:1/soma")
    async with gateway_client(down) as client:
        response = await client.get(
            "/v1/memory/recall/stream",
            params={"query": "heron"},
            headers=auth_headers(down, "acme"),
        )
        assert response.status_code == 503, response.text
        assert int(response.headers["Retry-After"]) >= 1
        assert response.json()["error"] == "memory_unavailable"
        client.headers.update(auth_headers(down, "acme"))
        with pytest.raises(RecallStreamError) as caught:
            await anext(recall_stream(client, "heron"))
        assert caught.value.status == 503 and (caught.value.retry_after_s or 0) >= 1
