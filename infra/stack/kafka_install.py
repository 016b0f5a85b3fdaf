"""The Kafka broker on disk: jars from Maven Central, generated config, formatted KRaft storage."""

from __future__ import annotations

import base64
import logging
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from infra.stack.apt import require_java, require_maven
from infra.stack.ports import parse_address
from infra.stack.process import run
from soma.settings import Settings

log = logging.getLogger(__name__)

KAFKA_VERSION = "4.1.1"  # must match infra/kafka/pom.xml
POM = Path(__file__).resolve().parent.parent / "kafka" / "pom.xml"
NODE_ID = 1  # single combined broker+controller node


@dataclass(frozen=True)
class KafkaPaths:
    """Where the broker's jars, config, data, pidfile and logs live under stack_dir."""

    lib: Path
    home: Path
    data: Path
    server_properties: Path
    log4j_properties: Path
    pidfile: Path
    log: Path
    console_log: Path

    @classmethod
    def of(cls, settings: Settings) -> KafkaPaths:
        home = settings.stack_dir / "kafka"
        logs = settings.stack_dir / "logs"
        return cls(
            lib=settings.stack_dir / f"kafka-{KAFKA_VERSION}" / "lib",
            home=home,
            data=home / "data",
            server_properties=home / "server.properties",
            log4j_properties=home / "log4j2.properties",
            pidfile=home / "kafka.pid",
            log=logs / "kafka.log",
            console_log=logs / "kafka.out",
        )

    def classpath(self) -> str:
        return f"{self.lib}/*"  # expanded by the JVM, not a shell


def install_kafka(paths: KafkaPaths) -> None:
    """Resolve the broker's and tools' runtime jars with Maven, once; an interrupted download
    is redone."""
    broker_jar = paths.lib / f"kafka_2.13-{KAFKA_VERSION}.jar"
    tools_jar = paths.lib / f"kafka-tools-{KAFKA_VERSION}.jar"
    if broker_jar.is_file() and tools_jar.is_file():
        return
    mvn = require_maven()
    log.info("kafka: resolving Apache Kafka %s from Maven Central (one-time)", KAFKA_VERSION)
    # Copy into a scratch directory and rename, so a half-copied lib/ never looks installed.
    partial = paths.lib.with_name("lib.partial")
    shutil.rmtree(partial, ignore_errors=True)
    run(
        [mvn, "-B", "-q", "-f", str(POM), "dependency:copy-dependencies",
         "-DincludeScope=runtime", f"-DoutputDirectory={partial}"],
        "maven dependency:copy-dependencies",
        timeout=600,
    )  # fmt: skip
    resolved = {p.name for p in partial.iterdir()}
    present = {p.name for p in paths.lib.iterdir()} if paths.lib.is_dir() else set()
    if not broker_jar.is_file() or present - resolved:
        # Fresh, or versions changed: a whole new lib/ (a running broker keeps its open jars).
        shutil.rmtree(paths.lib, ignore_errors=True)
        partial.rename(paths.lib)
        return
    # A lib/ from before the tools were added: a running broker may use it, so only add the
    # jars it lacks (its classpath was fixed when it started), the tools jar last, as the mark.
    added = sorted(p for p in partial.iterdir() if not (paths.lib / p.name).exists())
    for jar in sorted(added, key=lambda p: p.name == tools_jar.name):
        jar.rename(paths.lib / jar.name)
    shutil.rmtree(partial, ignore_errors=True)


def write_kafka_config(settings: Settings, paths: KafkaPaths) -> None:
    """Generate server.properties and log4j2.properties from settings, on every start."""
    broker = parse_address(settings.kafka_bootstrap, 9092)
    controller = f"{broker.host}:{settings.kafka_controller_port}"
    paths.home.mkdir(parents=True, exist_ok=True)
    paths.log.parent.mkdir(parents=True, exist_ok=True)
    server = {
        "node.id": NODE_ID,
        "process.roles": "broker,controller",
        "listeners": f"PLAINTEXT://{broker},CONTROLLER://{controller}",
        "advertised.listeners": f"PLAINTEXT://{broker}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "controller.quorum.voters": f"{NODE_ID}@{controller}",
        "log.dirs": paths.data,
        "num.partitions": 6,
        "default.replication.factor": 1,
        "min.insync.replicas": 1,
        "offsets.topic.replication.factor": 1,
        "transaction.state.log.replication.factor": 1,
        "transaction.state.log.min.isr": 1,
        # One broker: nobody else will join, so waiting for a rebalance only slows tests down.
        "group.initial.rebalance.delay.ms": 0,
        # Topics come from the registry (`topics apply`); a typo must fail, not create a topic.
        "auto.create.topics.enable": "false",
    }
    paths.server_properties.write_text(_properties(server))
    # log4j2 properties format (Kafka 4.x); a log4j 1 file would be ignored silently.
    log4j = {
        "status": "warn",
        "appender.file.type": "RollingFile",
        "appender.file.name": "FILE",
        "appender.file.fileName": paths.log,
        "appender.file.filePattern": f"{paths.log}.%i",
        "appender.file.layout.type": "PatternLayout",
        "appender.file.layout.pattern": "[%d] %p %m (%c)%n",
        "appender.file.policies.type": "Policies",
        "appender.file.policies.size.type": "SizeBasedTriggeringPolicy",
        "appender.file.policies.size.size": "50MB",
        "appender.file.strategy.type": "DefaultRolloverStrategy",
        "appender.file.strategy.max": 3,
        "rootLogger.level": "INFO",
        "rootLogger.appenderRef.file.ref": "FILE",
        "logger.req.name": "kafka.request.logger",
        "logger.req.level": "WARN",
        "logger.nc.name": "org.apache.kafka.clients.NetworkClient",
        "logger.nc.level": "WARN",
    }
    paths.log4j_properties.write_text(_properties(log4j))


def format_storage(paths: KafkaPaths) -> None:
    """Format the KRaft log directory once; a formatted directory keeps its cluster id."""
    if (paths.data / "meta.properties").is_file():
        return
    java = require_java()
    cluster_id = _random_cluster_id()
    log.info("kafka: formatting %s with cluster id %s", paths.data, cluster_id)
    run(
        [java, f"-Dlog4j2.configurationFile={paths.log4j_properties}", "-cp", paths.classpath(),
         "kafka.tools.StorageTool", "format", "--ignore-formatted",
         "-t", cluster_id, "-c", str(paths.server_properties)],
        "kafka storage format",
        timeout=120,
    )  # fmt: skip


def _random_cluster_id() -> str:
    # Kafka's Uuid.toString: 16 random bytes, base64url without padding. Kafka refuses ids that
    # start with "-" (they read as command-line flags), so draw again in that case.
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def _properties(values: dict[str, object]) -> str:
    header = "# Generated by infra/stack/kafka_install.py on every start: edit that, not this.\n"
    return header + "".join(f"{key}={value}\n" for key, value in values.items())
