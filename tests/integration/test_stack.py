"""The local stack runner against the real Kafka, Redis and PostgreSQL it starts."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
import redis
from confluent_kafka.admin import AdminClient, NewTopic
from typer.testing import CliRunner

from infra.stack import kafka_running, start_kafka, status, stop_kafka, up
from infra.stack.kafka import broker_address, kafka_pid
from infra.stack.kafka_install import KAFKA_VERSION
from infra.stack.ports import parse_address, port_open
from infra.stack.process import wait_until
from soma.cli_stack import stack_app
from soma.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def settings() -> Settings:
    return Settings()


@pytest.fixture(scope="module", autouse=True)
def stack(settings: Settings) -> None:
    """Bring the stack up (a no-op when it already runs) and leave it running for other suites."""
    up(settings)


@pytest.fixture
def admin(settings: Settings) -> AdminClient:
    return AdminClient({"bootstrap.servers": settings.kafka_bootstrap})


@pytest.fixture
def topic_factory(admin: AdminClient) -> Iterator[list[str]]:
    """Names registered here are deleted after the test."""
    created: list[str] = []
    yield created
    if created:
        for future in admin.delete_topics(created, operation_timeout=30).values():
            future.result(timeout=30)


def test_status_reports_all_three_running(settings: Settings) -> None:
    statuses = {service.name: service for service in status(settings)}
    assert set(statuses) == {"kafka", "redis", "postgres", "prometheus"}
    for service in statuses.values():
        assert service.state == "running", service.line()
        assert service.pid is not None and service.pid > 0
        assert service.data_dir.is_dir()
    assert f"version={KAFKA_VERSION}" in statuses["kafka"].detail
    assert "topics=" in statuses["kafka"].detail


def test_status_command_prints_one_line_per_service() -> None:
    result = CliRunner().invoke(stack_app, ["status"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert [line.split()[0] for line in lines] == ["kafka", "redis", "postgres", "prometheus"]
    assert all(line.split()[1] == "running" for line in lines)


def test_kafka_answers_metadata_with_the_configured_defaults(
    settings: Settings, admin: AdminClient, topic_factory: list[str]
) -> None:
    metadata = admin.list_topics(timeout=10)
    # The configured address, not 9092: a side-by-side stack runs on other ports.
    configured = parse_address(settings.kafka_bootstrap, 9092)
    assert [(b.host, b.port) for b in metadata.brokers.values()] == [
        (configured.host, configured.port)
    ]

    name = f"test.stack.{uuid.uuid4().hex}"
    topic_factory.append(name)
    # -1 asks for the broker default, which the generated server.properties sets to 6.
    admin.create_topics([NewTopic(name, num_partitions=-1)])[name].result(timeout=30)
    assert wait_until(lambda: name in admin.list_topics(timeout=5).topics, timeout=30)
    assert len(admin.list_topics(name, timeout=5).topics[name].partitions) == 6


def test_redis_answers_ping_and_keeps_a_value(settings: Settings) -> None:
    key = f"test:stack:{uuid.uuid4().hex}"
    with redis.Redis.from_url(settings.redis_url, socket_timeout=5) as client:
        assert client.ping() is True
        client.set(key, "v", ex=60)
        assert client.get(key) == b"v"
        client.delete(key)


def test_postgres_answers_select_one_with_the_settings_dsn(settings: Settings) -> None:
    with psycopg.connect(settings.postgres_dsn, connect_timeout=5) as conn:
        row = conn.execute("SELECT 1, current_user, current_database()").fetchone()
    assert row == (1, "soma", "soma")


def test_up_again_is_harmless_and_keeps_the_same_pids(settings: Settings) -> None:
    before = {service.name: service.pid for service in status(settings)}
    after = {service.name: service.pid for service in up(settings)}
    assert after == before
    assert all(service.state == "running" for service in status(settings))


@pytest.mark.fault
def test_kafka_stops_and_starts_again_alone(
    settings: Settings, admin: AdminClient, topic_factory: list[str]
) -> None:
    name = f"test.stack.{uuid.uuid4().hex}"
    topic_factory.append(name)
    admin.create_topics([NewTopic(name, num_partitions=1)])[name].result(timeout=30)
    others_before = {s.name: s.pid for s in status(settings) if s.name != "kafka"}
    old_pid = kafka_pid(settings)

    assert stop_kafka(settings) is True
    assert wait_until(lambda: not port_open(broker_address(settings)), timeout=30)
    assert not kafka_running(settings)
    assert stop_kafka(settings) is False  # stopping a stopped broker is harmless

    new_pid = start_kafka(settings)
    assert new_pid != old_pid
    assert kafka_running(settings)
    # The topic survived the restart: storage is kept, not reformatted.
    fresh = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    assert wait_until(lambda: name in fresh.list_topics(timeout=5).topics, timeout=60)
    assert {s.name: s.pid for s in status(settings) if s.name != "kafka"} == others_before
