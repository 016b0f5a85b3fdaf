"""Kafka's own command-line tools, run with the stack's java and jars against the local broker."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

from infra.stack.apt import require_java
from infra.stack.kafka_install import KafkaPaths
from soma.settings import Settings

CONSUMER_GROUPS = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"


@dataclass(frozen=True)
class GroupOffsetRow:
    """One row of `kafka-consumer-groups --describe --offsets` (None where it prints '-')."""

    topic: str
    partition: int
    current: int | None
    end: int | None
    lag: int | None


def describe_group(settings: Settings, group: str) -> dict[tuple[str, int], GroupOffsetRow]:
    """`kafka-consumer-groups --describe --offsets --group GROUP`, parsed by (topic, partition)."""
    stack = Settings()  # the jars of the running stack, whatever the test's settings isolate
    paths = KafkaPaths.of(stack)
    argv = [
        require_java(),
        f"-Dlog4j2.configurationFile={paths.log4j_properties}",
        "-cp",
        paths.classpath(),
        CONSUMER_GROUPS,
        "--bootstrap-server",
        settings.kafka_bootstrap,
        "--describe",
        "--offsets",
        "--group",
        group,
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr + done.stdout
    rows: dict[tuple[str, int], GroupOffsetRow] = {}
    for line in done.stdout.splitlines():
        parts = line.split()
        if len(parts) < 6 or parts[0] != group:
            continue  # header, blank line, "has no active members"
        topic, partition, current, end, lag = parts[1:6]
        rows[(topic, int(partition))] = GroupOffsetRow(
            topic, int(partition), _number(current), _number(end), _number(lag)
        )
    return rows


def _number(text: str) -> int | None:
    return None if text == "-" else int(text)
