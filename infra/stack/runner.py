"""The whole local stack: bring Kafka, Redis, PostgreSQL and Prometheus up and down, and report."""

from __future__ import annotations

import logging

from infra.stack.apt import ensure_debian_packages
from infra.stack.errors import PortTakenError
from infra.stack.kafka import (
    broker_address,
    kafka_pid,
    kafka_status,
    start_kafka,
    stop_kafka,
    wait_for_kafka,
)
from infra.stack.kafka_install import KafkaPaths, install_kafka
from infra.stack.ports import Address
from infra.stack.postgres import (
    Database,
    postgres_pid,
    postgres_status,
    start_postgres,
    stop_postgres,
)
from infra.stack.prometheus import (
    prometheus_address,
    prometheus_pid,
    prometheus_status,
    start_prometheus,
    stop_prometheus,
)
from infra.stack.redis import redis_address, redis_pid, redis_status, start_redis, stop_redis
from infra.stack.service import ServiceStatus, refuse_foreign
from soma.settings import Settings

log = logging.getLogger(__name__)


def up(settings: Settings) -> list[ServiceStatus]:
    """Install what is missing and start every service that is not running; harmless when up.

    Kafka's JVM is launched first and awaited last: it is the slowest to boot, and Redis and
    PostgreSQL start in its shadow.
    """
    _prepare_stack_dir(settings)
    _refuse_foreign_ports(settings)
    ensure_debian_packages()
    install_kafka(KafkaPaths.of(settings))
    kafka = start_kafka(settings, wait=False)
    start_redis(settings)
    start_postgres(settings)
    start_prometheus(settings)  # scrapes the plane once `soma up` runs it
    wait_for_kafka(settings, kafka)
    return status(settings)


def down(settings: Settings) -> list[str]:
    """Stop every service this stack started; the names of those that were running."""
    stopped = []
    services = (
        ("kafka", stop_kafka),
        ("redis", stop_redis),
        ("postgres", stop_postgres),
        ("prometheus", stop_prometheus),
    )
    for name, stop in services:
        if stop(settings):
            stopped.append(name)
    return stopped


def status(settings: Settings) -> list[ServiceStatus]:
    """One status per service, in start order."""
    return [
        kafka_status(settings),
        redis_status(settings),
        postgres_status(settings),
        prometheus_status(settings),
    ]


def _prepare_stack_dir(settings: Settings) -> None:
    (settings.stack_dir / "logs").mkdir(parents=True, exist_ok=True)
    # The postgres user must traverse stack_dir to reach its own cluster below it.
    settings.stack_dir.chmod(0o755)


def _refuse_foreign_ports(settings: Settings) -> None:
    """Check every port before starting anything: a conflict must not leave a half-started stack."""
    kafka, broker = kafka_pid(settings), broker_address(settings)
    controller = Address(broker.host, settings.kafka_controller_port)
    ours: list[tuple[str, int | None, Address, str]] = [
        ("kafka", kafka, broker, "SOMA_KAFKA_BOOTSTRAP"),
        ("kafka controller", kafka, controller, "SOMA_KAFKA_CONTROLLER_PORT"),
        ("redis", redis_pid(settings), redis_address(settings), "SOMA_REDIS_URL"),
        ("postgres", postgres_pid(settings), Database.of(settings).address, "SOMA_POSTGRES_DSN"),
        (
            "prometheus",
            prometheus_pid(settings),
            prometheus_address(settings),
            "SOMA_PROMETHEUS_PORT",
        ),
    ]
    problems = []
    for name, pid, address, setting in ours:
        if pid is None:
            try:
                refuse_foreign(name, address, setting)
            except PortTakenError as exc:
                problems.append(str(exc))
    if problems:
        raise PortTakenError("\n".join(problems))
