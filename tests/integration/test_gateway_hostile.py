"""Hostile bodies against a real gateway process: 4xx naming field and rule, and no stall.

Each body of tests/support/hostile.py is sent while /healthz is probed on another connection;
a probe that waits more than a second means one request held the event loop.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from soma.settings import Settings
from tests.conftest import TEST_JWT_KEYS, AuthHeaders
from tests.integration.conftest import TopicSetFactory
from tests.support.hostile import CASES
from tests.support.processes import running_gateway

pytestmark = pytest.mark.integration

MAX_PROBE_WAIT_S = 1.0


def gateway_env(settings: Settings) -> dict[str, str]:
    """What a gateway process needs to serve `settings`' topic set with the test keys."""
    return {
        "SOMA_TOPIC_PREFIX": settings.topic_prefix,
        "SOMA_JWT_KEYS": json.dumps(TEST_JWT_KEYS),
        "SOMA_JWT_ACTIVE_KID": settings.jwt_active_kid,
    }


@pytest.fixture
def gateway(topic_set_factory: TopicSetFactory, tmp_path: Path) -> Iterator[tuple[str, Settings]]:
    settings, _ = topic_set_factory(["conversation.inbound", "memory.requests", "tool.requests"])
    with running_gateway(gateway_env(settings), tmp_path / "gateway.log") as base:
        yield base, settings


async def test_hostile_bodies_never_5xx_nor_stall_healthz(
    gateway: tuple[str, Settings], auth_headers: AuthHeaders
) -> None:
    base, settings = gateway
    headers = {**auth_headers(settings), "content-type": "application/json"}
    waits: list[float] = []
    answers: dict[str, httpx.Response] = {}
    async with (
        httpx.AsyncClient(base_url=base, timeout=30) as hostile,
        httpx.AsyncClient(base_url=base, timeout=30) as prober,
    ):
        assert (await prober.get("/healthz")).status_code == 200  # warmed up
        for case in CASES:
            # One keep-alive connection for every hostile body: a refusal must leave it usable.
            sending = asyncio.create_task(
                hostile.post(case.path, content=case.body, headers=headers)
            )
            await asyncio.sleep(0.005)  # the body is on its way (2 MiB take a few ms on loopback)
            # Probe while the gateway reads, parses and refuses it; then once more right after.
            for _ in range(2):
                started = time.perf_counter()
                probe = await prober.get("/healthz")
                waits.append(time.perf_counter() - started)
                assert probe.status_code == 200, probe.text
            answers[case.name] = await sending
        after = await hostile.post("/v1/session/message", json={"message": "ok"}, headers=headers)

    assert after.status_code == 202, after.text
    for case in CASES:
        response = answers[case.name]
        assert response.status_code == case.status, (case.name, response.text)
        body = response.json()
        if case.rule is not None:
            assert body["rule"] == case.rule, (case.name, body)
        if case.field is not None:
            assert body["field"] == case.field, (case.name, body)
    print(f"healthz probes: {len(waits)}, max wait {max(waits):.3f} s")
    assert max(waits) < MAX_PROBE_WAIT_S, sorted(waits)[-5:]
