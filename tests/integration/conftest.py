"""Integration fixtures: the real stack, fresh topic sets, a Kafka reader, an in-process gateway."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Message, TopicPartition

from gateway.app import create_app
from infra.stack.ports import parse_address, port_open
from soma.settings import Settings
from tests.conftest import SettingsFactory
from tests.support.memory_fixtures import (  # noqa: F401  (fixtures)
    memory_schema,
    scope_factory,
    somabrain_standin,
    standin,
)
from topics.admin import apply_topics, delete_topics, high_watermarks
from topics.registry import TopicRegistry, TopicSpec

STACK_WAIT_S = 120.0  # the stack may still be starting when the suite begins

TopicSetFactory = Callable[..., tuple[Settings, TopicRegistry]]
KafkaReader = Callable[..., list[Message]]
GatewayClient = Callable[[Settings], AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture(scope="session")
def stack_ready() -> Settings:
    """Wait until Kafka, Redis and Postgres answer on their configured ports (`soma stack up`)."""
    settings = Settings()
    addresses = {
        "kafka": parse_address(settings.kafka_bootstrap, 9092),
        "redis": parse_address(settings.redis_url.split("//", 1)[-1].split("/", 1)[0], 6379),
        "postgres": parse_address(settings.postgres_dsn.rsplit("@", 1)[-1].split("/", 1)[0], 5432),
    }
    deadline = time.monotonic() + STACK_WAIT_S
    while True:
        closed = [name for name, address in addresses.items() if not port_open(address)]
        if not closed:
            return settings
        if time.monotonic() > deadline:
            pytest.fail(
                f"{', '.join(closed)} not reachable after {STACK_WAIT_S:.0f}s: "
                "start the stack with `soma stack up`"
            )
        time.sleep(1.0)


def _wait_until_served(settings: Settings, specs: list[TopicSpec], timeout_s: float = 30.0) -> None:
    # CreateTopics returns before every partition is served: metadata may already name a
    # leader that still answers NOT_LEADER_FOR_PARTITION. A watermark query on every partition
    # succeeding means produce and fetch will too.
    deadline = time.monotonic() + timeout_s
    names = [s.name for s in specs]
    while True:
        try:
            marks = high_watermarks(settings, names, timeout_s=5)
            if all(len(marks.get(s.name, {})) == s.partitions for s in specs):
                return
        except KafkaException:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"topics not served after {timeout_s}s: {names}")
        time.sleep(0.1)


@pytest.fixture
def topic_set_factory(
    stack_ready: Settings, settings_factory: SettingsFactory
) -> Iterator[TopicSetFactory]:
    """`topic_set_factory(names=None, **settings_overrides) -> (settings, registry)`.

    Creates the registry's topics (all, or the logical `names` given) under a fresh prefix and
    deletes them after the test.
    """
    created: list[tuple[Settings, list[str]]] = []

    def make(
        names: Iterable[str] | None = None, **overrides: Any
    ) -> tuple[Settings, TopicRegistry]:
        settings = settings_factory(**overrides)
        registry = TopicRegistry(settings.topic_prefix)
        specs = list(registry) if names is None else [registry.get(n) for n in names]
        created.append((settings, [s.name for s in specs]))
        apply_topics(settings, specs)
        _wait_until_served(settings, specs)
        return settings, registry

    yield make
    for settings, names in created:
        delete_topics(settings, names)


@pytest.fixture
def fresh_topics(topic_set_factory: TopicSetFactory) -> tuple[Settings, TopicRegistry]:
    """Every registry topic under a fresh prefix: (settings, registry); deleted afterwards."""
    return topic_set_factory()


def read_topic(
    settings: Settings, topic: str, count: int = 1, timeout_s: float = 15.0
) -> list[Message]:
    """Up to `count` records of `topic` from the beginning, within `timeout_s`.

    Partitions are assigned directly (no group join, so no rebalance delay); the group id is
    fresh so nothing is shared with other readers.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"test-reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    records: list[Message] = []
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        partitions = metadata.topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        deadline = time.monotonic() + timeout_s
        while len(records) < count and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is not None and not message.error():
                records.append(message)
        return records
    finally:
        consumer.close()


@pytest.fixture
def kafka_reader() -> KafkaReader:
    """`kafka_reader(settings, topic, count=1, timeout_s=15.0) -> list[Message]`."""
    return read_topic


@pytest.fixture
def gateway_client() -> GatewayClient:
    """`async with gateway_client(settings) as client:` an in-process gateway, lifespan included."""

    @asynccontextmanager
    async def run(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
                yield client

    return run
