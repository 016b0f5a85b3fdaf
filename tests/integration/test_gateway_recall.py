"""GET /v1/memory/recall on the real Postgres backend and Redis: the token's tenant only, cached
until a write bumps its generation, uncached without Redis, 503 when the backend is down."""

from __future__ import annotations

import uuid

import pytest
from prometheus_client import REGISTRY

from processors.memory import MemoryWrite
from processors.memory_keys import MemoryScope
from soma.settings import Settings
from state.memory.factory import memory_backend
from state.recall_cache import bump_generations, redis_client
from tests.conftest import AuthHeaders, SettingsFactory
from tests.integration.conftest import GatewayClient

pytestmark = pytest.mark.integration


async def remember(settings: Settings, scope: MemoryScope, text: str, session: str) -> str:
    backend = memory_backend(settings)
    try:
        write = MemoryWrite.for_event(scope, uuid.uuid4().hex, {"text": text}, session_id=session)
        await backend.remember(write)
        return write.key
    finally:
        await backend.aclose()


async def test_recall_answers_from_the_callers_tenant_scope_and_session(
    memory_schema: Settings,
    settings_factory: SettingsFactory,
    gateway_client: GatewayClient,
    auth_headers: AuthHeaders,
) -> None:
    settings = settings_factory()
    tenant, other = f"r{uuid.uuid4().hex[:10]}", f"r{uuid.uuid4().hex[:10]}"
    scope = MemoryScope(tenant, settings.namespace)
    kept = await remember(settings, scope, "the grey heron fishes at dawn", "s1")
    await remember(settings, scope, "a heron in another session", "s2")
    await remember(settings, MemoryScope(tenant, "elsewhere"), "heron in another namespace", "s1")
    async with gateway_client(settings) as client:
        mine = await client.get(
            "/v1/memory/recall",
            params={"query": "heron dawn", "top_k": 5},
            headers=auth_headers(settings, tenant),
        )
        assert mine.status_code == 200, mine.text
        body = mine.json()
        assert body["namespace"] == settings.namespace and body["universe"] == "default"
        texts = [hit["value"]["text"] for hit in body["results"]]
        assert texts[0] == "the grey heron fishes at dawn"  # both words: ranked first
        assert set(texts) == {"the grey heron fishes at dawn", "a heron in another session"}

        session = await client.get(
            "/v1/memory/recall",
            params={"query": "heron", "session_id": "s1"},
            headers=auth_headers(settings, tenant),
        )
        assert [hit["key"] for hit in session.json()["results"]] == [kept]

        elsewhere = await client.get(
            "/v1/memory/recall",
            params={"query": "heron", "namespace": "elsewhere"},
            headers=auth_headers(settings, tenant),
        )
        assert [h["value"]["text"] for h in elsewhere.json()["results"]] == [
            "heron in another namespace"
        ]

        # Another tenant's token names the same words and sees nothing of them.
        theirs = await client.get(
            "/v1/memory/recall", params={"query": "heron"}, headers=auth_headers(settings, other)
        )
        assert theirs.status_code == 200 and theirs.json()["results"] == []


async def test_recall_refuses_bad_parameters_with_the_field_named(
    stack_ready: Settings,
    settings_factory: SettingsFactory,
    gateway_client: GatewayClient,
    auth_headers: AuthHeaders,
) -> None:
    settings = settings_factory()
    async with gateway_client(settings) as client:
        headers = auth_headers(settings, "acme")
        cases = {
            ("/query/namespace", "scope"): {"query": "x", "namespace": "a/b"},
            ("/query/top_k", "maximum"): {"query": "x", "top_k": 51},
            ("/query/query", "required"): {},
            ("/query/query", "minLength"): {"query": "   "},
            ("/query/session_id", "pattern"): {"query": "x", "session_id": "s\x00"},
        }
        for (field, rule), params in cases.items():
            refused = await client.get("/v1/memory/recall", params=params, headers=headers)
            assert refused.status_code == 422, refused.text
            assert (refused.json()["field"], refused.json()["rule"]) == (field, rule)
        assert (await client.get("/v1/memory/recall", params={"query": "x"})).status_code == 401


async def test_recall_answers_503_with_retry_after_when_the_backend_is_down(
    stack_ready: Settings,
    settings_factory: SettingsFactory,
    gateway_client: GatewayClient,
    auth_headers: AuthHeaders,
) -> None:
    # Nothing listens on port 1: the backend's connection is refused at once.
    settings = settings_factory(postgres_dsn="postgresql://soma:soma@127.0.0.1:1/soma")
    async with gateway_client(settings) as client:
        response = await client.get(
            "/v1/memory/recall", params={"query": "heron"}, headers=auth_headers(settings, "acme")
        )
    assert response.status_code == 503, response.text
    assert int(response.headers["Retry-After"]) >= 1
    assert response.json()["error"] == "memory_unavailable"


def _cache_lookups(outcome: str) -> float:
    sample = REGISTRY.get_sample_value("soma_recall_cache_lookups_total", {"outcome": outcome})
    return sample or 0.0


async def test_recall_is_cached_until_a_write_bumps_its_generation(
    memory_schema: Settings,
    settings_factory: SettingsFactory,
    gateway_client: GatewayClient,
    auth_headers: AuthHeaders,
) -> None:
    settings = settings_factory()
    tenant = f"r{uuid.uuid4().hex[:10]}"
    scope = MemoryScope(tenant, settings.namespace)
    await remember(settings, scope, "the kingfisher dives", "s1")
    redis = redis_client(settings)
    try:
        async with gateway_client(settings) as client:
            headers = auth_headers(settings, tenant)

            async def texts(expect: str, **params: object) -> list[str]:
                response = await client.get(
                    "/v1/memory/recall",
                    params={"query": "kingfisher", "top_k": 5, **params},
                    headers=headers,
                )
                assert response.status_code == 200, response.text
                assert response.headers["X-Recall-Cache"] == expect
                return sorted(hit["value"]["text"] for hit in response.json()["results"])

            hits_before = _cache_lookups("hit")
            assert await texts("miss") == ["the kingfisher dives"]
            assert await texts("hit") == ["the kingfisher dives"]
            assert _cache_lookups("hit") == hits_before + 1
            assert await texts("miss", top_k=4) == ["the kingfisher dives"]  # other parameters

            # Stored without a bump, the cached answer lacks it: the bump is what invalidates.
            await remember(settings, scope, "a second kingfisher", "s1")
            assert await texts("hit") == ["the kingfisher dives"]
            assert await bump_generations(redis, {(tenant, settings.namespace)})
            assert await texts("miss") == ["a second kingfisher", "the kingfisher dives"]
            assert await texts("hit") == ["a second kingfisher", "the kingfisher dives"]

            # Another namespace's bump leaves this answer cached.
            assert await bump_generations(redis, {(tenant, "elsewhere")})
            assert await texts("hit") == ["a second kingfisher", "the kingfisher dives"]
    finally:
        await redis.aclose()


async def test_redis_down_recall_answers_uncached_and_healthz_is_degraded(
    memory_schema: Settings,
    settings_factory: SettingsFactory,
    gateway_client: GatewayClient,
    auth_headers: AuthHeaders,
) -> None:
    # Nothing listens on port 1: every Redis call is refused at once.
    settings = settings_factory(redis_url="redis://127.0.0.1:1/0")
    tenant = f"r{uuid.uuid4().hex[:10]}"
    await remember(settings, MemoryScope(tenant, settings.namespace), "an otter slides", "s1")
    uncached_before = _cache_lookups("uncached")
    async with gateway_client(settings) as client:
        for _ in range(2):
            response = await client.get(
                "/v1/memory/recall",
                params={"query": "otter"},
                headers=auth_headers(settings, tenant),
            )
            assert response.status_code == 200, response.text
            assert response.headers["X-Recall-Cache"] == "uncached"
            assert [h["value"]["text"] for h in response.json()["results"]] == ["an otter slides"]
        health = await client.get("/healthz")
    assert _cache_lookups("uncached") == uncached_before + 2
    assert health.status_code == 200, health.text
    assert health.json()["status"] == "degraded"
    assert health.json()["components"]["redis"]["status"] == "down"


async def test_recall_with_the_cache_off_asks_the_backend_every_time(
    memory_schema: Settings,
    settings_factory: SettingsFactory,
    gateway_client: GatewayClient,
    auth_headers: AuthHeaders,
) -> None:
    settings = settings_factory(recall_cache_ttl_s=0)
    tenant = f"r{uuid.uuid4().hex[:10]}"
    await remember(settings, MemoryScope(tenant, settings.namespace), "a wren sings", "s1")
    async with gateway_client(settings) as client:
        for _ in range(2):
            response = await client.get(
                "/v1/memory/recall",
                params={"query": "wren"},
                headers=auth_headers(settings, tenant),
            )
            assert response.status_code == 200 and response.headers["X-Recall-Cache"] == "off"
