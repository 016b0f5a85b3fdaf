"""The session-counts worker on the real broker: exact counts through the state read API."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from processors.partitioning import partition_for
from soma.settings import Settings
from state.reads import StateReader
from tests.support.flows import (
    TestProducer,
    WorkerProcess,
    create_topics,
    delete_test_topics,
    isolated_settings,
    read_topic,
    wait_committed,
    wait_until,
)
from tests.support.processes import free_port

pytestmark = pytest.mark.integration

TOPICS = ("conversation.inbound", "conversation.inbound.dlq")


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[Settings, str]]:
    settings = isolated_settings(stack_dir=tmp_path)
    app_id = f"sc-{uuid.uuid4().hex[:10]}"
    create_topics(settings, TOPICS)
    yield settings, app_id
    delete_test_topics(settings, app_id)


@pytest.fixture
def worker_factory(
    stack: tuple[Settings, str], tmp_path: Path
) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []
    settings, app_id = stack

    def make(data_dir: str = "w1") -> WorkerProcess:
        worker = WorkerProcess(
            "session-counts",
            settings,
            app_id,
            free_port(),
            tmp_path / data_dir,
            tmp_path / f"{data_dir}.log",
        )
        started.append(worker.start())
        return worker

    yield make
    for worker in started:
        worker.stop()


async def read_count(settings: Settings, key: tuple[str, str], app_id: str) -> dict[str, Any]:
    reader = StateReader(settings)
    try:
        return await reader.read("session-counts", *key, group=app_id)
    finally:
        await reader.aclose()


def test_counts_every_session_exactly(
    stack: tuple[Settings, str], worker_factory: Callable[..., WorkerProcess]
) -> None:
    settings, app_id = stack
    producer = TestProducer(settings)
    keys = [(f"tenant{t}", f"session-{s}") for t in range(3) for s in range(5)]
    # Uneven counts per session, interleaved, so a lost or doubled batch shows.
    producer.send(key for round_ in range(40) for i, key in enumerate(keys) if i % 4 <= round_ % 4)
    producer.flush()
    worker_factory().wait_ready()

    source = settings.topic_prefix + "conversation.inbound"
    wait_committed(settings, app_id, source)
    counts = {key: asyncio.run(read_count(settings, key, app_id)) for key in keys}

    assert {f"{t}/{s}": c["count"] for (t, s), c in counts.items()} == dict(producer.sent)
    for (tenant, session_id), answer in counts.items():
        key = f"{tenant}/{session_id}".encode()
        assert answer["partition"] == partition_for(key, 6)
        assert answer["tenant"] == tenant and answer["session_id"] == session_id
    unknown = asyncio.run(read_count(settings, ("tenant0", "never"), app_id))
    assert unknown["count"] == 0


def test_changelog_is_co_partitioned_and_holds_the_counts(
    stack: tuple[Settings, str], worker_factory: Callable[..., WorkerProcess]
) -> None:
    settings, app_id = stack
    producer = TestProducer(settings)
    producer.send((f"acme{i % 4}", f"s{i % 9}") for i in range(1200))
    producer.flush()
    worker_factory().wait_ready()
    source = settings.topic_prefix + "conversation.inbound"
    wait_committed(settings, app_id, source)

    latest: dict[str, dict[str, int]] = {}
    for record in read_topic(settings, f"{app_id}-session_counts-changelog"):
        assert record.partition() == partition_for(record.key(), 6), record.key()
        latest[record.key().decode()] = orjson.loads(record.value())
    assert {k: v["count"] for k, v in latest.items()} == dict(producer.sent)


def test_endpoint_answers_per_key(
    stack: tuple[Settings, str], worker_factory: Callable[..., WorkerProcess]
) -> None:
    settings, _ = stack
    producer = TestProducer(settings)
    producer.send([("acme", "a/b c")] * 3)  # a session id with '/' and a space
    producer.flush()
    worker = worker_factory().wait_ready()

    def count() -> int:
        return int(worker.get("/state/session-counts/acme%2Fa%2Fb%20c").json()["count"])

    wait_until(lambda: count() == 3, timeout_s=60, what="3 events counted")
    body = worker.get("/state/session-counts/acme/a/b c").json()
    assert body["owner"] is True and body["count"] == 3 and body["key"] == "acme/a/b c"
