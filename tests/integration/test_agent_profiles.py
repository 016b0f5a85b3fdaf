"""GET /v1/agents/profiles end to end: agent headers on a request → the event → the stored
memory and its WAL record → the write-through flow's `session_agents` state → the listing.

The gateway runs in-process; the write-through worker is the real worker process, against the
SomaBrain stand-in. The agent values travel in the event's body (`agent_profile`, `persona_id`,
`universe` of a memory write; `metadata.*` of a conversation event), not in record headers: the
record headers are tenant, request id, trace and schema (DESIGN.md).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from soma.settings import Settings
from tests.conftest import AuthHeaders, SettingsFactory
from tests.integration.conftest import GatewayClient
from tests.support.flows import WorkerProcess
from tests.support.processes import free_port, wait_until
from tests.support.somabrain import StandIn
from tests.support.write_through import topic_values

pytestmark = [pytest.mark.integration]


async def test_agent_headers_reach_memory_and_list_as_the_tenants_profiles(
    write_through_stack: tuple[Settings, str],
    standin: StandIn,
    tmp_path: Path,
    settings_factory: SettingsFactory,
    gateway_client: GatewayClient,
    auth_headers: AuthHeaders,
) -> None:
    settings, _ = write_through_stack
    env = {"SOMA_BASE_URL": standin.url, "SOMA_API_TOKEN": standin.token}
    # The spec's group under this test's prefix: the gateway reads the page from that group.
    app_id = f"{settings.topic_prefix}soma-write-through"
    worker = WorkerProcess(
        "write-through",
        settings,
        app_id,
        free_port(),
        tmp_path / "wt",
        tmp_path / "wt.log",
        env=env,
    ).start()
    tenant, other = f"ap{uuid.uuid4().hex[:8]}", f"ap{uuid.uuid4().hex[:8]}"
    agent = {"X-Agent-Profile": "researcher", "X-Persona-Id": "ada", "X-Universe-Id": "lab"}
    try:
        worker.wait_ready()
        gateway = settings_factory(topic_prefix=settings.topic_prefix, stack_dir=settings.stack_dir)
        async with gateway_client(gateway) as client:
            mine = auth_headers(gateway, tenant)
            wrote = await client.post(
                "/v1/memory/remember",
                json={"session_id": "s1", "payload": {"fact": "herons fish at dawn"}},
                headers={**mine, **agent},
            )
            assert wrote.status_code == 202, wrote.text
            said = await client.post(
                "/v1/session/message",
                json={"session_id": "s2", "message": "plan the survey"},
                headers={**mine, "X-Agent-Profile": "planner", "X-Persona-Id": "bo"},
            )
            assert said.status_code == 202, said.text

            # 1. The events carry the headers' values.
            (write,) = topic_values(settings, "memory.requests")
            assert (write["agent_profile"], write["persona_id"], write["universe"]) == (
                "researcher",
                "ada",
                "lab",
            )
            (message,) = topic_values(settings, "conversation.inbound")
            assert message["metadata"]["agent_profile"] == "planner"
            assert message["persona_id"] == "bo"

            # 2. The memory service stored them, and the WAL records say so.
            def stored() -> list[dict[str, Any]]:
                return [i for i in standin.items() if i["tenant"] == tenant]

            wait_until(lambda: len(stored()) == 2, timeout_s=60, what="both memories stored")
            by_universe = {item["universe"]: item["payload"] for item in stored()}
            assert by_universe["lab"]["agent_profile"] == "researcher"
            assert by_universe["lab"]["persona_id"] == "ada"
            assert by_universe["default"]["metadata"]["agent_profile"] == "planner"
            wal = {r["idempotency_key"]: r for r in topic_values(settings, "memory.wal")}
            assert len(wal) == 2
            assert wal[write["idempotency_key"]]["metadata"]["agent_profile"] == "researcher"

            # 3. The listing, from the flow's state: the tenant's two profiles, nobody else's.
            deadline = time.monotonic() + 60
            while True:
                listed = await client.get("/v1/agents/profiles", headers=mine)
                if listed.status_code == 200 and len(listed.json()["profiles"]) == 2:
                    break
                assert time.monotonic() < deadline, listed.text
                await asyncio.sleep(0.5)
            body = listed.json()
            assert body["tenant"] == tenant and body["truncated"] is False
            profiles = {p["agent_profile"]: p for p in body["profiles"]}
            assert profiles["researcher"]["persona_ids"] == ["ada"]
            assert profiles["researcher"]["universes"] == ["lab"]
            assert profiles["researcher"]["sessions"] == 1
            assert profiles["planner"]["persona_ids"] == ["bo"]
            assert profiles["planner"]["universes"] == []
            assert profiles["planner"]["first_seen"].endswith(":00.000Z")  # to the minute

            others = await client.get("/v1/agents/profiles", headers=auth_headers(gateway, other))
            assert others.status_code == 200 and others.json()["profiles"] == []
    finally:
        worker.stop()
