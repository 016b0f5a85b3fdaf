"""The lag exporter survives a broker outage: last values with up=0 meanwhile, fresh ones after."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from infra.stack.kafka import kafka_running, start_kafka, stop_kafka
from soma.settings import Settings
from tests.support.flows import TestProducer, create_topics, delete_test_topics
from tests.support.processes import free_port, wait_until

pytestmark = [pytest.mark.fault, pytest.mark.integration]

REPO = Path(__file__).resolve().parents[2]
STACK = Settings()  # the running stack's broker (the test's own settings isolate its stack dir)


@dataclass
class Exporter:
    settings: Settings
    url: str
    proc: subprocess.Popen[bytes]

    def samples(self) -> dict[str, list[tuple[dict[str, str], float]]]:
        assert self.proc.poll() is None, f"the exporter exited with {self.proc.returncode}"
        text = httpx.get(f"{self.url}/metrics", timeout=5).text
        found: dict[str, list[tuple[dict[str, str], float]]] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                found.setdefault(sample.name, []).append((sample.labels, sample.value))
        return found

    def group_lag(self) -> float | None:
        group = f"{self.settings.topic_prefix}soma-session-counts"
        rows = [v for labels, v in self.samples().get("soma_consumer_group_lag_offsets", [])
                if labels["group"] == group]  # fmt: skip
        return sum(rows) if rows else None

    def serving(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"the exporter exited with {self.proc.returncode}")
        try:
            return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def up(self) -> float:
        return self.samples()["soma_lag_exporter_up"][0][1]


@pytest.fixture
def exporter(tmp_path: Path) -> Iterator[Exporter]:
    prefix = f"x{uuid.uuid4().hex[:8]}."
    settings = Settings(topic_prefix=prefix, stack_dir=tmp_path)
    create_topics(settings, ("conversation.inbound", "conversation.inbound.dlq"))
    port = free_port()
    env = {
        **os.environ,
        "SOMA_TOPIC_PREFIX": prefix,
        "SOMA_STACK_DIR": str(tmp_path),
        "SOMA_LAG_POLL_INTERVAL_S": "0.5",
    }
    with (tmp_path / "exporter.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "soma.cli", "lag-exporter", "--port", str(port)],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        started = Exporter(settings, f"http://127.0.0.1:{port}", proc)
        wait_until(started.serving, 60, "the exporter to serve /healthz")
        yield started
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if not kafka_running(STACK):
            start_kafka(STACK)
        delete_test_topics(settings)


def test_exporter_keeps_last_values_through_a_broker_outage(exporter: Exporter) -> None:
    producer = TestProducer(exporter.settings)
    producer.send([("acme", f"s{i}") for i in range(10)])
    producer.flush()
    # Nobody committed: the group's lag is everything on the topic.
    wait_until(lambda: exporter.group_lag() == 10, 60, "the exporter to report lag 10")
    assert exporter.up() == 1.0

    stop_kafka(STACK)
    try:
        wait_until(lambda: exporter.up() == 0.0, 60, "the exporter to report the broker down")
        assert exporter.proc.poll() is None
        assert exporter.group_lag() == 10  # the last values, still served
        health = httpx.get(f"{exporter.url}/healthz", timeout=5).json()
        assert health["broker_up"] is False and health["last_error"]
    finally:
        start_kafka(STACK)

    producer.send([("acme", f"s{i}") for i in range(5)])
    producer.flush()
    # Same process, same clients: it reconnects by itself and reports fresh values.
    wait_until(
        lambda: exporter.up() == 1.0 and exporter.group_lag() == 15,
        90,
        "fresh lag after the broker restart",
    )
