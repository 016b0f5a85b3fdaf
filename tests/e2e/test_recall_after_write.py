"""Recall after write through the cache: gateway → Kafka → write-through (bumps) → Redis → recall.

A recall warms the cache; a second write of the same tenant/namespace must show in the next
recall long before the cached answer's TTL (5 minutes) ends: only the write-through flow's
generation bump can make that happen.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.auth import issue_token
from soma.settings import Settings
from tests.conftest import TEST_JWT_KEYS
from tests.support.flows import WorkerProcess
from tests.support.processes import running_gateway, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

VISIBLE_WITHIN_S = 20.0  # a write reaches the backend within seconds; the TTL is 300 s


def _facts(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return sorted(hit["value"]["fact"] for hit in response.json()["results"])


def _bumps(worker: WorkerProcess) -> float:
    text = worker.get("/metrics").text
    for family in text_string_to_metric_families(text):
        if family.name == "soma_recall_cache_generation_bumps":
            for sample in family.samples:
                if sample.name.endswith("_total") and sample.labels == {"outcome": "ok"}:
                    return sample.value
    return 0.0


def test_a_second_write_is_recalled_although_the_first_answer_was_cached(
    write_through_stack: tuple[Settings, str],
    write_through_worker_factory: Callable[..., WorkerProcess],
    memory_schema: Settings,
    tmp_path: Path,
) -> None:
    settings, _ = write_through_stack
    worker = write_through_worker_factory("w1").wait_ready()
    settings = settings.model_copy(update={"jwt_keys": TEST_JWT_KEYS, "jwt_active_kid": "k2"})
    tenant, session = f"rc{uuid.uuid4().hex[:8]}", f"s-{uuid.uuid4().hex[:6]}"
    env = {
        "SOMA_TOPIC_PREFIX": settings.topic_prefix,
        "SOMA_JWT_KEYS": json.dumps(TEST_JWT_KEYS),
        "SOMA_JWT_ACTIVE_KID": "k2",
    }
    headers = {"Authorization": f"Bearer {issue_token(settings, tenant)}"}
    with (
        running_gateway(env, tmp_path / "gateway.log") as base,
        httpx.Client(base_url=base, headers=headers, timeout=30) as client,
    ):

        def remember(fact: str) -> None:
            body: dict[str, Any] = {"session_id": session, "payload": {"fact": fact}}
            accepted = client.post("/v1/memory/remember", json=body)
            assert accepted.status_code == 202, accepted.text

        def recall() -> httpx.Response:
            return client.get("/v1/memory/recall", params={"query": "lighthouse", "top_k": 10})

        def cached(facts: list[str]) -> bool:
            response = recall()
            return response.headers["X-Recall-Cache"] == "hit" and _facts(response) == facts

        first = ["the lighthouse is red"]
        remember(first[0])
        wait_until(lambda: _facts(recall()) == first, VISIBLE_WITHIN_S, "the first write")
        # A recall between the backend's ack and the worker's bump is stored under the old
        # generation and missed once the bump lands: wait for the bump, then for a hit.
        bumps = wait_until(lambda: _bumps(worker), VISIBLE_WITHIN_S, "the first bump")
        wait_until(lambda: cached(first), VISIBLE_WITHIN_S, "the answer to be cached")

        both = ["the lighthouse is red", "the lighthouse keeper left"]
        remember(both[1])
        # Without the bump the cached answer (first fact only) would be served for 300 s.
        wait_until(lambda: _facts(recall()) == both, VISIBLE_WITHIN_S, "the second write")
        wait_until(lambda: _bumps(worker) > bumps, VISIBLE_WITHIN_S, "the second bump")
        wait_until(lambda: cached(both), VISIBLE_WITHIN_S, "the new answer to be cached")
