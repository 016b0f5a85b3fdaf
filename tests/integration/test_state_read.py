"""StateReader against two workers of one group: it asks whichever owns the key."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import ConsumerGroupState

from processors.partitioning import partition_for
from processors.worker_identity import worker_url
from soma.settings import Settings
from state.errors import StateUnavailable
from state.reads import StateReader
from tests.support.flows import (
    TestProducer,
    WorkerProcess,
    create_topics,
    delete_test_topics,
    isolated_settings,
    wait_committed,
    wait_until,
)
from tests.support.processes import free_port
from topics.admin import admin_client

pytestmark = pytest.mark.integration

KEYS = [(f"tenant{t}", f"session{s}") for t in range(3) for s in range(10)]


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[Settings, str]]:
    settings = isolated_settings(stack_dir=tmp_path)
    app_id = f"read-{uuid.uuid4().hex[:10]}"
    create_topics(settings, ("conversation.inbound", "conversation.inbound.dlq"))
    yield settings, app_id
    delete_test_topics(settings, app_id)


@pytest.fixture
def worker_factory(
    stack: tuple[Settings, str], tmp_path: Path
) -> Iterator[Callable[[str], WorkerProcess]]:
    settings, app_id = stack
    started: list[WorkerProcess] = []

    def make(name: str) -> WorkerProcess:
        worker = WorkerProcess(
            "session-counts",
            settings,
            app_id,
            free_port(),
            tmp_path / name,
            tmp_path / f"{name}.log",
        )
        started.append(worker.start())
        return worker

    yield make
    for worker in started:
        worker.stop()


def source_owners(settings: Settings, group: str) -> dict[int, str] | None:
    """partition -> worker URL of the source topic, once the group is Stable."""
    admin = admin_client(settings)  # keep it alive until the future resolves
    description = admin.describe_consumer_groups([group])[group].result(timeout=10)
    if description.state != ConsumerGroupState.STABLE:
        return None
    source = settings.topic_prefix + "conversation.inbound"
    return {
        tp.partition: str(worker_url(member.client_id))
        for member in description.members
        for tp in member.assignment.topic_partitions
        if tp.topic == source
    }


async def _read_with_owner(settings: Settings, key: tuple[str, str], app_id: str) -> dict[str, Any]:
    reader = StateReader(settings)
    try:
        answer = await reader.read("session-counts", *key, group=app_id)
        source = settings.topic_prefix + "conversation.inbound"
        # Tenants never see the owner; the test asks the locator which worker answered.
        answer["_owner"] = await reader.locator.owner_url(app_id, source, answer["partition"])
        return answer
    finally:
        await reader.aclose()


def read(settings: Settings, key: tuple[str, str], app_id: str) -> dict[str, Any] | None:
    """The answer, or None while the group moves (StateUnavailable is the retry signal)."""
    try:
        return asyncio.run(_read_with_owner(settings, key, app_id))
    except StateUnavailable:
        return None


def test_each_key_is_answered_by_its_owner(
    stack: tuple[Settings, str], worker_factory: Callable[[str], WorkerProcess]
) -> None:
    settings, app_id = stack
    producer = TestProducer(settings)
    producer.send(key for i in range(8) for key in KEYS[: 10 + 2 * i])  # uneven counts
    producer.flush()
    first, second = worker_factory("w1"), worker_factory("w2")
    first.wait_ready()
    second.wait_ready()
    urls = {first.url, second.url}
    owners = wait_until(
        lambda: (
            (o := source_owners(settings, app_id))
            and len(o) == 6
            and set(o.values()) == urls
            and first.ready()
            and second.ready()
            and o
        ),
        timeout_s=90,
        what="both workers owning source partitions",
    )
    wait_committed(settings, app_id, settings.topic_prefix + "conversation.inbound")

    answers = {
        key: wait_until(
            lambda k=key: read(settings, k, app_id), timeout_s=30, what=f"an answer for {key}"
        )
        for key in KEYS
    }

    # Keys never produced (the last six) must read as 0, not fail.
    expected = {f"{t}/{s}": producer.sent.get(f"{t}/{s}", 0) for t, s in KEYS}
    assert {f"{t}/{s}": a["count"] for (t, s), a in answers.items()} == expected
    for (tenant, session), answer in answers.items():
        partition = partition_for(f"{tenant}/{session}".encode(), 6)
        assert answer["partition"] == partition
        assert answer["_owner"] == owners[partition]
        assert "owner" not in answer
    assert {a["_owner"] for a in answers.values()} == urls  # keys on both workers were read

    # The worker that does not own a key refuses to answer for it.
    tenant, session = KEYS[0]
    owner = answers[KEYS[0]]["_owner"]
    other = second if owner == first.url else first
    refused = other.get(f"/state/session-counts/{tenant}%2F{session}")
    assert refused.status_code == 421 and refused.json()["owner"] is False
    # Without the gateway's credential even the owner answers nothing: tenant scoping is the
    # gateway's, so a worker page must not be a way around it.
    owning = first if owner == first.url else second
    anonymous = owning.get(f"/state/session-counts/{tenant}%2F{session}", internal=False)
    assert anonymous.status_code == 401 and "count" not in anonymous.json()


def test_reads_follow_a_rebalance_and_fail_cleanly_without_workers(
    stack: tuple[Settings, str], worker_factory: Callable[[str], WorkerProcess]
) -> None:
    settings, app_id = stack
    producer = TestProducer(settings)
    producer.send(KEYS * 2)
    producer.flush()
    first, second = worker_factory("w1"), worker_factory("w2")
    first.wait_ready()
    second.wait_ready()
    wait_until(
        lambda: (o := source_owners(settings, app_id)) and len(set(o.values())) == 2,
        timeout_s=90,
        what="both workers owning source partitions",
    )
    wait_committed(settings, app_id, settings.topic_prefix + "conversation.inbound")

    second.stop()  # graceful: it leaves the group, the first takes over its partitions
    wait_until(
        lambda: (o := source_owners(settings, app_id)) and set(o.values()) == {first.url},
        timeout_s=90,
        what="the first worker owning every partition",
    )
    for key in KEYS:
        answer = wait_until(
            lambda k=key: read(settings, k, app_id),
            timeout_s=60,
            what=f"an answer for {key} after the rebalance",
        )
        assert answer["count"] == 2 and answer["_owner"] == first.url

    first.stop()
    with pytest.raises(StateUnavailable) as raised:
        asyncio.run(_read_with_owner(settings, KEYS[0], app_id))
    assert raised.value.retry_after_s >= 1
