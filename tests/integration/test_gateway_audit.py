"""GET /v1/admin/audit and /export: tenant-scoped, filtered, paged by cursor, streamed NDJSON."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from processors.audit import audit_event
from soma.settings import Settings
from state.audit.store import Appended, AuditStore
from tests.conftest import AuthHeaders
from tests.integration.conftest import GatewayClient, TopicSetFactory, read_topic

pytestmark = pytest.mark.integration

START = datetime(2025, 3, 1, tzinfo=UTC)


async def seed(settings: Settings, tenant: str, n: int) -> None:
    """n events a minute apart, every third a topics.apply, appended as the audit flow does."""
    items = [
        Appended(
            audit_event(
                actor=f"user{i}",
                tenant=tenant,
                action="topics.apply" if i % 3 == 0 else "dlq.ack",
                resource=f"r{i}",
                outcome="ok",
                occurred_at=START + timedelta(minutes=i),
            )
        )
        for i in range(n)
    ]
    async with AuditStore(settings.postgres_dsn) as store:
        assert await store.append(tenant, items) == n


async def test_an_admin_reads_and_exports_only_its_own_tenant(
    topic_set_factory: TopicSetFactory,
    gateway_client: GatewayClient,
    auth_headers: AuthHeaders,
    memory_schema: Settings,
) -> None:
    settings, registry = topic_set_factory(["agent.audit.v1"])
    mine, other = f"g-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    await seed(settings, mine, 23)
    await seed(settings, other, 5)
    admin = auth_headers(settings, tenant=mine, roles=["admin"])
    async with gateway_client(settings) as client:
        assert (await client.get("/v1/admin/audit")).status_code == 401
        plain = await client.get("/v1/admin/audit", headers=auth_headers(settings, tenant=mine))
        assert plain.status_code == 403

        seen, cursor = [], None
        while True:
            params: dict[str, object] = {"order": "asc", "limit": 7}
            if cursor is not None:
                params["cursor"] = cursor
            page = (await client.get("/v1/admin/audit", params=params, headers=admin)).json()
            assert page["tenant"] == mine
            seen += page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert [link["seq"] for link in seen] == list(range(1, 24))
        assert {link["event"]["tenant"] for link in seen} == {mine}
        assert all(a["hash"] == b["prev_hash"] for a, b in itertools.pairwise(seen))

        newest = (await client.get("/v1/admin/audit", params={"limit": 2}, headers=admin)).json()
        assert [link["seq"] for link in newest["items"]] == [23, 22]
        applied = await client.get(
            "/v1/admin/audit",
            params={"action": "topics.apply", "since": "2025-03-01T00:03:00Z", "limit": 500},
            headers=admin,
        )
        assert [x["event"]["actor"] for x in applied.json()["items"]] == [
            f"user{i}" for i in (21, 18, 15, 12, 9, 6, 3)
        ]
        for bad in ({"limit": 0}, {"action": "Not An Action"}, {"since": "yesterday"}):
            refused = await client.get("/v1/admin/audit", params=bad, headers=admin)
            assert refused.status_code == 422, (bad, refused.text)

        export = await client.get("/v1/admin/audit/export", headers=admin)
        assert export.status_code == 200
        assert export.headers["content-type"].startswith("application/x-ndjson")
        lines = [orjson.loads(line) for line in export.content.splitlines()]
        assert [line["seq"] for line in lines] == list(range(1, 24))
        assert lines == seen  # the export is the chain, exactly as the pages showed it
        other_admin = auth_headers(settings, tenant=other, roles=["admin"])
        theirs = await client.get("/v1/admin/audit/export", headers=other_admin)
        assert len(theirs.content.splitlines()) == 5

    records = await asyncio.to_thread(
        read_topic, settings, registry.get("agent.audit.v1").name, 3, 5.0
    )
    exported = sorted(orjson.loads(r.value())["tenant"] for r in records)
    assert exported == sorted([mine, other])  # both exports audited, nothing else
