"""Apache Kafka in the stack: start, wait until it answers metadata, stop, restart, status."""

from __future__ import annotations

import logging
import time

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from infra.stack.apt import require_java
from infra.stack.errors import StackError
from infra.stack.kafka_install import (
    KAFKA_VERSION,
    KafkaPaths,
    format_storage,
    install_kafka,
    write_kafka_config,
)
from infra.stack.ports import Address, parse_address, port_open
from infra.stack.process import is_alive, live_pid, spawn_detached, tail, terminate
from infra.stack.service import ServiceStatus, classify, refuse_foreign
from soma.settings import Settings

log = logging.getLogger(__name__)

# Measured here: ~4 s from a clean stop, ~15 s after kill -9 (the controller refuses the new
# registration until the old broker session, 9 s, expires). The rest is slack for a loaded box.
READY_TIMEOUT_S = 90.0
STOP_GRACE_S = 30.0  # controlled shutdown flushes and closes every partition's log


def broker_address(settings: Settings) -> Address:
    return parse_address(settings.kafka_bootstrap, 9092)


def kafka_pid(settings: Settings) -> int | None:
    """The pid of the broker this stack started, if it is alive."""
    paths = KafkaPaths.of(settings)
    # Our server.properties on the java command line tells our broker from a reused pid.
    return live_pid(paths.pidfile, str(paths.server_properties))


def kafka_running(settings: Settings) -> bool:
    """True when our broker process is alive and its listener accepts connections."""
    return kafka_pid(settings) is not None and port_open(broker_address(settings))


def start_kafka(settings: Settings, wait: bool = True) -> int:
    """Start the broker unless it already runs (then: no-op); with wait, return once it answers.

    Installs the jars, regenerates the config and formats storage on first use.
    """
    paths = KafkaPaths.of(settings)
    pid = kafka_pid(settings)
    if pid is None:
        broker = broker_address(settings)
        refuse_foreign("kafka", broker, "SOMA_KAFKA_BOOTSTRAP")
        controller = Address(broker.host, settings.kafka_controller_port)
        refuse_foreign("kafka controller", controller, "SOMA_KAFKA_CONTROLLER_PORT")
        install_kafka(paths)
        write_kafka_config(settings, paths)
        format_storage(paths)
        pid = spawn_detached(_java_command(paths), paths.console_log, cwd=paths.home)
        paths.pidfile.write_text(f"{pid}\n")
        log.info("kafka: started pid %d, log %s", pid, paths.log)
    if wait:
        wait_for_kafka(settings, pid)
    return pid


def wait_for_kafka(settings: Settings, pid: int, timeout: float = READY_TIMEOUT_S) -> None:
    """Block until the broker answers a metadata request; fail fast if the JVM dies."""
    paths = KafkaPaths.of(settings)
    admin = _admin(settings)
    deadline = time.monotonic() + timeout
    while True:
        if not is_alive(pid):
            raise StackError(
                f"kafka: pid {pid} exited while starting; last lines of {paths.log}:\n"
                f"{tail(paths.log)}\n--- {paths.console_log}:\n{tail(paths.console_log, 15)}"
            )
        remaining = deadline - time.monotonic()
        try:
            admin.list_topics(timeout=max(0.5, min(3.0, remaining)))
            return
        except KafkaException:
            if remaining <= 0:
                raise StackError(
                    f"kafka: pid {pid} did not answer metadata on {broker_address(settings)} "
                    f"within {timeout:.0f} s; last lines of {paths.log}:\n{tail(paths.log)}"
                ) from None
        time.sleep(0.2)  # a refused connection returns at once; do not spin


def stop_kafka(settings: Settings) -> bool:
    """Stop our broker (SIGTERM, SIGKILL after the grace period); False when it was not running."""
    paths = KafkaPaths.of(settings)
    pid = kafka_pid(settings)
    if pid is None:
        paths.pidfile.unlink(missing_ok=True)
        return False
    graceful = terminate(pid, STOP_GRACE_S)
    if not graceful:
        log.warning("kafka: pid %d ignored SIGTERM for %.0f s and was killed", pid, STOP_GRACE_S)
    paths.pidfile.unlink(missing_ok=True)
    log.info("kafka: stopped pid %d", pid)
    return True


def restart_kafka(settings: Settings) -> int:
    """Stop and start the broker alone (fault tests); returns the new pid once it answers."""
    stop_kafka(settings)
    return start_kafka(settings)


def topic_names(settings: Settings, timeout: float = 5.0) -> list[str]:
    """User topics on the broker (internal `__*` topics left out)."""
    metadata = _admin(settings).list_topics(timeout=timeout)
    return sorted(name for name in metadata.topics if not name.startswith("__"))


def kafka_status(settings: Settings) -> ServiceStatus:
    paths = KafkaPaths.of(settings)
    address = broker_address(settings)
    state, pid = classify(kafka_pid(settings), address)
    detail = f"version={KAFKA_VERSION}"
    if state == "running":
        try:
            detail += f" topics={len(topic_names(settings))}"
        except KafkaException:
            detail += " topics=? (metadata request failed)"
    return ServiceStatus("kafka", state, pid, address, paths.data, detail)


def _admin(settings: Settings) -> AdminClient:
    return AdminClient(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            # While the broker boots every attempt is refused; those are expected, not news.
            "log_level": 0,
            "reconnect.backoff.max.ms": 500,
        }
    )


def _java_command(paths: KafkaPaths) -> list[str]:
    return [
        require_java(),
        "-Xms512m",
        "-Xmx1g",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={paths.log4j_properties}",
        f"-Dkafka.logs.dir={paths.log.parent}",
        "-cp",
        paths.classpath(),
        "kafka.Kafka",
        str(paths.server_properties),
    ]
