"""Dead letters an operator can work with, on the real broker: the index lists and filters them
per tenant, inspect shows the record, replay republishes it (and is refused when it would fail
again), ack and purge take entries off the open list, and every action is audited."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from gateway.app import create_app
from gateway.auth import ADMIN_ROLE, PLATFORM_ADMIN_ROLE, issue_token
from processors.partitioning import partition_for
from soma.settings import Settings
from tests.conftest import TEST_JWT_KEYS
from tests.integration.test_flow_dead_letters import RawProducer, valid_value
from tests.support.flows import (
    TestProducer,
    WorkerProcess,
    create_topics,
    isolated_settings,
    read_topic,
    running_flows,
)
from tests.support.processes import wait_until
from topics.registry import dead_letter_topics

pytestmark = pytest.mark.integration

TOPICS = (
    "conversation.inbound",
    *dead_letter_topics(),
    "dlq.actions",
    "dlq.invalid",
    "agent.audit.v1",
)


@dataclass
class Plane:
    settings: Settings
    counts: WorkerProcess
    index: WorkerProcess

    def headers(self, tenant: str, *roles: str) -> dict[str, str]:
        token = issue_token(self.settings, tenant, subject=f"ops@{tenant}", roles=roles)
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[Plane]:
    settings = isolated_settings(stack_dir=tmp_path, jwt_keys=TEST_JWT_KEYS, jwt_active_kid="k2")
    create_topics(settings, TOPICS)
    with running_flows(settings, ("session-counts", "dlq-index"), tmp_path) as workers:
        yield Plane(settings, workers["session-counts"], workers["dlq-index"])


@pytest.fixture
async def client(plane: Plane) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(plane.settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw", timeout=30) as c:
            yield c


async def eventually(probe: Any, what: str, timeout_s: float = 60) -> Any:
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(0.3)
    raise TimeoutError(f"{what} (last: {last!r})")


async def test_operators_list_inspect_replay_ack_and_purge_dead_letters(
    plane: Plane, client: httpx.AsyncClient
) -> None:
    raw, good = RawProducer(plane.settings), TestProducer(plane.settings)
    good.send([("acme", "s1")] * 3)
    good.flush()
    # acme: a valid event from a producer with the wrong partitioner (replay fixes it);
    # beta: not JSON (replay would fail again); a keyless one naming no tenant.
    wrong = (partition_for(b"acme/s9", 6) + 1) % 6
    raw.send(b"acme/s9", valid_value("acme", "s9"), partition=wrong)
    raw.send(b"beta/x", b"<not json>")
    raw.send(None, b"{}")
    platform = plane.headers("ops", PLATFORM_ADMIN_ROLE)

    async def listed(headers: dict[str, str], **params: str) -> list[dict[str, Any]]:
        response = await client.get("/v1/admin/dlq", headers=headers, params=params)
        if response.status_code == 503:
            return []
        assert response.status_code == 200, response.text
        return list(response.json()["entries"])

    everything = await eventually(
        lambda: _at_least(listed(platform), 3), "three dead letters indexed"
    )
    assert {(e["tenant"], e["reason"]) for e in everything} == {
        ("acme", "wrong_partition"),
        ("beta", "not_json"),
        (None, "no_key"),
    }

    # Tenant scoping: an admin sees only its tenant; a plain token nothing at all.
    acme_admin, beta_admin = plane.headers("acme", ADMIN_ROLE), plane.headers("beta", ADMIN_ROLE)
    assert [e["tenant"] for e in await listed(acme_admin)] == ["acme"]
    assert [e["tenant"] for e in await listed(beta_admin)] == ["beta"]
    assert (await client.get("/v1/admin/dlq", headers=plane.headers("acme"))).status_code == 403
    forbidden = await client.get("/v1/admin/dlq", headers=acme_admin, params={"tenant": "beta"})
    assert forbidden.status_code == 403
    assert [e["reason"] for e in await listed(platform, reason="not_json")] == ["not_json"]
    assert len(await listed(platform, source_topic="conversation.inbound")) == 3

    acme = (await listed(acme_admin))[0]
    beta = (await listed(beta_admin))[0]
    # Another tenant's entry is not found, not forbidden: its existence is not disclosed.
    assert (
        await client.get(f"/v1/admin/dlq/entries/{acme['id']}", headers=beta_admin)
    ).status_code == 404

    inspected = (await client.get(f"/v1/admin/dlq/entries/{acme['id']}", headers=acme_admin)).json()
    envelope = inspected["envelope"]
    payload = orjson.loads(base64.b64decode(envelope["original_value"]))
    assert (payload["tenant"], payload["session_id"]) == ("acme", "s9")
    assert envelope["original_key"] == "acme/s9" and inspected["status"] == "open"
    assert envelope["source_partition"] == wrong and "murmur2" in envelope["error_message"]

    # Replay: the record goes back to its topic through the murmur2 producer, so it lands
    # where it belongs and is counted; the entry leaves the open list.
    replayed = await client.post(f"/v1/admin/dlq/entries/{acme['id']}/replay", headers=acme_admin)
    assert replayed.status_code == 200, replayed.text

    async def counted() -> bool:
        body = plane.counts.get("/state/session-counts/acme%2Fs9").json()
        return bool(body.get("count") == 1)

    await eventually(counted, "the replayed record counted")
    await eventually(lambda: _none(listed(acme_admin)), "the replayed entry off the open list")
    again = await client.post(f"/v1/admin/dlq/entries/{acme['id']}/replay", headers=acme_admin)
    assert again.status_code == 409
    states = await listed(acme_admin, status="replayed")
    assert states[0]["replays"] == 1 and states[0]["status_by"] == "ops@acme"

    # A record that would fail again is refused, naming why.
    refused = await client.post(f"/v1/admin/dlq/entries/{beta['id']}/replay", headers=beta_admin)
    assert refused.status_code == 422 and "not UTF-8 keyed JSON" in refused.json()["message"]

    # Ack (new path) and purge (upstream path) take entries off the open list.
    acked = await client.post(
        f"/v1/admin/dlq/entries/{beta['id']}/ack", headers=beta_admin, json={"note": "bad client"}
    )
    assert acked.status_code == 200
    await eventually(lambda: _none(listed(beta_admin)), "the acked entry off the open list")
    upstream = await client.get("/v1/admin/dlq/conversation.inbound.dlq", headers=platform)
    assert [e["reason"] for e in upstream.json()["entries"]] == ["no_key"]
    purged = await client.delete("/v1/admin/dlq/conversation.inbound", headers=platform)
    assert purged.json() == {"purged": 1}
    await eventually(lambda: _none(listed(platform)), "nothing left open")

    # Every action is in the audit topic.
    audit = [
        orjson.loads(r.value())
        for r in read_topic(plane.settings, plane.settings.topic_prefix + "agent.audit.v1")
    ]
    assert sorted(a["action"] for a in audit) == ["dlq.ack", "dlq.purge", "dlq.replay"]
    assert {a["actor"] for a in audit} == {"ops@acme", "ops@beta", "ops@ops"}


async def _at_least(rows: Any, n: int) -> list[dict[str, Any]] | None:
    found = await rows
    return found if len(found) >= n else None


async def _none(rows: Any) -> bool:
    return not await rows


def test_soma_dlq_lists_shows_and_acks_from_the_shell(plane: Plane) -> None:
    env = {
        **os.environ,
        "SOMA_TOPIC_PREFIX": plane.settings.topic_prefix,
        "SOMA_STACK_DIR": str(plane.settings.stack_dir),
        "SOMA_JWT_KEYS": '{"k2": "' + TEST_JWT_KEYS["k2"] + '"}',
        "SOMA_JWT_ACTIVE_KID": "k2",
    }

    def soma(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "soma.cli", "dlq", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    RawProducer(plane.settings).send(b"acme/cli", b"not json")
    listed = wait_until(
        lambda: (out := soma("list", "--tenant", "acme")) and "not_json" in out and out,
        timeout_s=60,
        what="the dead letter listed by `soma dlq list`",
    )
    entry_id = listed.splitlines()[0].split()[-1]
    assert entry_id.startswith("acme/cli#")
    shown = json.loads(soma("show", entry_id))
    assert base64.b64decode(shown["envelope"]["original_value"]) == b"not json"
    assert "acknowledged" in soma("ack", entry_id, "--note", "seen")
    wait_until(
        lambda: "0 dead letter(s)" in soma("list", "--tenant", "acme"),
        timeout_s=60,
        what="the acked entry off the open list",
    )
    assert "acked" in soma("list", "--tenant", "acme", "--status", "acked")
