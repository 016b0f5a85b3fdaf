"""Back-pressure through the real plane: the memory service is down, one tenant's writes pile up
in the outbox past the limit and its memory writes get 429 + Retry-After (counted per tenant),
another tenant is not affected; `GET /v1/outbox` and `soma outbox status|flush` read the drain's
state; once the service is back the outbox drains and the throttled tenant writes again."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from gateway.auth import PLATFORM_ADMIN_ROLE, issue_token
from soma.settings import Settings
from tests.conftest import TEST_JWT_KEYS
from tests.integration.conftest import GatewayClient
from tests.support.flows import WorkerProcess, create_topics
from tests.support.processes import free_port
from tests.support.somabrain import StandIn

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
LIMIT = 20


@pytest.fixture
def plane(
    write_through_stack: tuple[Settings, str], standin: StandIn, tmp_path: Path
) -> Iterator[Settings]:
    """Write-through and the outbox drain (in the group the gateway reads) on the stand-in."""
    base, app_id = write_through_stack
    settings = base.model_copy(
        update={
            "jwt_keys": TEST_JWT_KEYS,
            "jwt_active_kid": "k2",
            "outbox_tenant_limit": LIMIT,
            "outbox_poll_interval_s": 0.5,
        }
    )
    create_topics(settings, ("memory.outbox.dlq",))
    env = {"SOMA_BASE_URL": standin.url, "SOMA_API_TOKEN": standin.token}
    standin.fault("store_down")
    workers = [
        WorkerProcess("write-through", settings, app_id, free_port(), tmp_path / "wt",
                      tmp_path / "wt.log", env=env),
        WorkerProcess("outbox-drain", settings, f"{settings.topic_prefix}soma-outbox-drain",
                      free_port(), tmp_path / "od", tmp_path / "od.log", env=env),
    ]  # fmt: skip
    for worker in workers:
        worker.start()
    try:
        for worker in workers:
            worker.wait_ready()
        yield settings
    finally:
        for worker in workers:
            worker.stop()


@pytest.fixture
async def client(plane: Settings, gateway_client: GatewayClient) -> AsyncIterator[Any]:
    async with gateway_client(plane) as http:
        yield http


def bearer(settings: Settings, tenant: str, *roles: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(settings, tenant, roles=roles)}"}


async def pending(client: httpx.AsyncClient, settings: Settings, tenant: str) -> int | None:
    answer = await client.get("/v1/outbox", headers=bearer(settings, tenant))
    if answer.status_code != 200:
        return None
    rows = [r for r in answer.json()["tenants"] if r["tenant"] == tenant]
    return rows[0]["pending"] if rows else 0


async def eventually(probe: Callable[[], Any], what: str, timeout_s: float = 90) -> None:
    import asyncio
    import time

    deadline = time.monotonic() + timeout_s
    while not await probe():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.3)


def throttled(tenant: str) -> float:
    value = REGISTRY.get_sample_value("soma_gateway_tenant_throttled_total", {"tenant": tenant})
    return value or 0.0


def soma(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "SOMA_TOPIC_PREFIX": settings.topic_prefix,
        "SOMA_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "SOMA_STACK_DIR": str(settings.stack_dir),
    }
    return subprocess.run(
        [sys.executable, "-m", "soma.cli", "outbox", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip


async def test_a_tenant_past_its_outbox_limit_is_throttled_alone_until_it_drains(
    plane: Settings, client: httpx.AsyncClient, standin: StandIn
) -> None:
    settings = plane
    heavy, light = f"h{uuid.uuid4().hex[:8]}", f"l{uuid.uuid4().hex[:8]}"
    items = [{"session_id": "s1", "payload": {"fact": f"fact {i}"}} for i in range(LIMIT + 15)]
    answer = await client.post(
        "/v1/memory/batch", json={"items": items}, headers=bearer(settings, heavy)
    )
    assert answer.status_code == 202, answer.text
    few = {"items": items[:3]}
    assert (
        await client.post("/v1/memory/batch", json=few, headers=bearer(settings, light))
    ).status_code == 202

    async def parked() -> bool:
        return await pending(client, settings, heavy) == len(items)

    await eventually(parked, "the heavy tenant's writes to wait in the outbox")
    assert await pending(client, settings, light) == 3

    # The gateway acts on the backlog it polled: the next write of the heavy tenant is refused.
    async def refused() -> bool:
        one = {"session_id": "s1", "payload": {"fact": "one more"}}
        got = await client.post("/v1/memory/remember", json=one, headers=bearer(settings, heavy))
        return got.status_code == 429

    before = throttled(heavy)
    await eventually(refused, "the heavy tenant to be throttled", timeout_s=10)
    one = {"session_id": "s1", "payload": {"fact": "again"}}
    got = await client.post("/v1/memory/remember", json=one, headers=bearer(settings, heavy))
    assert got.status_code == 429
    # (A write accepted before the gateway's next poll saw the backlog may have joined it.)
    assert got.json()["error"] == "tenant_throttled" and got.json()["pending"] >= len(items)
    assert 1 <= int(got.headers["Retry-After"]) <= 60
    message = {"session_id": "s1", "message": "hello"}
    assert (
        await client.post("/v1/session/message", json=message, headers=bearer(settings, heavy))
    ).status_code == 429
    assert throttled(heavy) >= before + 2
    other = await client.post("/v1/memory/remember", json=one, headers=bearer(settings, light))
    assert other.status_code == 202, "another tenant is not throttled"
    assert throttled(light) == 0

    # A platform admin sees every tenant; a tenant only itself.
    admin = await client.get("/v1/outbox", headers=bearer(settings, "ops", PLATFORM_ADMIN_ROLE))
    assert {heavy, light} <= {r["tenant"] for r in admin.json()["tenants"]}
    own = await client.get("/v1/outbox", headers=bearer(settings, light))
    assert [r["tenant"] for r in own.json()["tenants"]] == [light]
    # Every delivery failed: the breaker is open, the drain only tries a trial a second.
    assert own.json()["modes"] == ["down"], own.json()

    status = soma(settings, "status")
    assert status.returncode == 0, status.stderr
    assert heavy in status.stdout and "down" in status.stdout

    # Back: a manual flush delivers the heavy tenant's writes now, whatever their backoff.
    standin.fault("none")
    flushed = soma(settings, "flush", "--tenant", heavy, "--no-progress", "--timeout", "120")
    assert flushed.returncode == 0, flushed.stdout + flushed.stderr
    assert "waiting writes" in flushed.stdout
    assert await pending(client, settings, heavy) == 0

    async def accepted() -> bool:
        again = {"session_id": "s1", "payload": {"fact": "after the outage"}}
        got = await client.post("/v1/memory/remember", json=again, headers=bearer(settings, heavy))
        return got.status_code == 202

    await eventually(accepted, "the heavy tenant to write again", timeout_s=10)
    stored = {item["key"] for item in standin.items() if item["tenant"] == heavy}
    assert len(stored) >= len(items)
