"""Gateway → Kafka → write-through → Postgres → recall: what an agent writes, it reads back."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.auth import issue_token
from processors.memory_keys import MemoryScope
from processors.tracing import new_traceparent
from soma.settings import Settings
from state.memory.factory import memory_backend
from tests.conftest import TEST_JWT_KEYS
from tests.support.flows import WorkerProcess
from tests.support.processes import running_gateway, wait_until
from tests.support.write_through import topic_values

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

RECALL_WITHIN_S = 10.0  # "within seconds", with room for a busy 2-core box


def recalled(client: httpx.Client, query: str, **params: Any) -> list[dict[str, Any]]:
    response = client.get("/v1/memory/recall", params={"query": query, **params})
    assert response.status_code == 200, response.text
    hits: list[dict[str, Any]] = response.json()["results"]
    return hits


def test_a_message_and_a_memory_write_are_recalled_and_the_turn_is_linked(
    write_through_stack: tuple[Settings, str],
    write_through_worker_factory: Callable[..., WorkerProcess],
    memory_schema: Settings,
    tmp_path: Path,
) -> None:
    settings, _ = write_through_stack
    write_through_worker_factory("w1").wait_ready()
    settings = settings.model_copy(update={"jwt_keys": TEST_JWT_KEYS, "jwt_active_kid": "k2"})
    tenant, session = f"e2e{uuid.uuid4().hex[:8]}", f"s-{uuid.uuid4().hex[:6]}"
    env = {
        "SOMA_TOPIC_PREFIX": settings.topic_prefix,
        "SOMA_JWT_KEYS": json.dumps(TEST_JWT_KEYS),
        "SOMA_JWT_ACTIVE_KID": "k2",
    }
    # The agent answers inside the trace the user's message started: that makes it one turn.
    turn = new_traceparent().header()
    headers = {"Authorization": f"Bearer {issue_token(settings, tenant)}"}
    with (
        running_gateway(env, tmp_path / "gateway.log") as base,
        httpx.Client(base_url=base, headers=headers, timeout=30) as client,
    ):
        asked = client.post(
            "/v1/session/message",
            json={"session_id": session, "message": "I keep bees on the roof"},
            headers={"traceparent": turn},
        )
        assert asked.status_code == 202, asked.text
        accepted_at = time.monotonic()
        answered = client.post(
            "/v1/events/conversation.outbound",
            json={"session_id": session, "role": "assistant", "message": "Noted: rooftop hives"},
            headers={"traceparent": turn},
        )
        assert answered.status_code == 202, answered.text
        written = client.post(
            "/v1/memory/remember",
            json={"session_id": session, "payload": {"fact": "the hive faces south"}},
        )
        assert written.status_code == 202, written.text

        user = wait_until(
            lambda: recalled(client, "bees roof"), RECALL_WITHIN_S, "the message to be recalled"
        )
        seen_after_s = time.monotonic() - accepted_at
        memory = wait_until(
            lambda: recalled(client, "hive south", session_id=session),
            RECALL_WITHIN_S,
            "the remembered write to be recalled",
        )
        reply = wait_until(lambda: recalled(client, "rooftop"), RECALL_WITHIN_S, "the reply")
        # Another tenant asks the same words and gets nothing.
        other = f"Bearer {issue_token(settings, f'x{tenant}')}"
        stranger = client.get(
            "/v1/memory/recall", params={"query": "bees"}, headers={"Authorization": other}
        )
        assert stranger.json()["results"] == []

    assert [hit["value"]["message"] for hit in user] == ["I keep bees on the roof"]
    assert user[0]["value"]["role"] == "user" and user[0]["value"]["session_id"] == session
    assert [hit["value"]["fact"] for hit in memory] == ["the hive faces south"]
    assert [hit["value"]["role"] for hit in reply] == ["assistant"]
    print(f"message recallable {seen_after_s * 1000:.0f} ms after the gateway's 202")

    async def links() -> list[tuple[str, str]]:
        backend = memory_backend(memory_schema)
        try:
            scope = MemoryScope(tenant, settings.namespace)
            return [(link.to_key, link.type) for link in await backend.links(scope, user[0]["key"])]
        finally:
            await backend.aclose()

    assert asyncio.run(links()) == [(reply[0]["key"], "reply")]
    # And each acknowledged write is in the WAL once.
    wal = [r for r in topic_values(settings, "memory.wal") if r["tenant"] == tenant]
    assert sorted(r["memory_key"] for r in wal) == sorted(
        h[0]["key"] for h in (user, memory, reply)
    )
