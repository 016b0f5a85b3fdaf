"""Test support for flows on the real broker: worker subprocesses, test events, topic readers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from soma.secrets import INTERNAL_HEADER, internal_token
from soma.settings import Settings
from tests.support.processes import wait_until
from topics.producer import producer_config
from topics.records import RecordContext, build_record
from topics.registry import TopicRegistry

REPO = Path(__file__).resolve().parents[2]


@dataclass
class WorkerProcess:
    """One `soma flow run` worker started as a subprocess; its output goes to `log_path`."""

    name: str
    settings: Settings
    app_id: str
    port: int
    data_dir: Path
    log_path: Path
    failpoint: str | None = None  # SOMA_FAILPOINT for this run (flows/failpoints.py)
    env: dict[str, str] = field(default_factory=dict)  # more SOMA_* settings for this worker
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> WorkerProcess:
        env = {
            **os.environ,
            "SOMA_TOPIC_PREFIX": self.settings.topic_prefix,
            "SOMA_KAFKA_BOOTSTRAP": self.settings.kafka_bootstrap,
            "SOMA_STACK_DIR": str(self.settings.stack_dir),
            **self.env,
        }
        env.pop("SOMA_FAILPOINT", None)
        if self.failpoint:
            env["SOMA_FAILPOINT"] = self.failpoint
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "soma.cli_flow",
                    "flow",
                    "run",
                    self.name,
                    "--port",
                    str(self.port),
                    "--data-dir",
                    str(self.data_dir),
                    "--app-id",
                    self.app_id,
                    "--loglevel",
                    "info",
                ],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def get(self, path: str, *, internal: bool = True) -> httpx.Response:
        """GET a worker page, as the gateway does (with the internal credential) by default."""
        headers = {INTERNAL_HEADER: internal_token(self.settings.stack_dir)} if internal else {}
        return httpx.get(f"{self.url}{path}", timeout=2.0, headers=headers)

    def ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"worker exited with {self.proc.returncode}; see {self.log_path}")
        try:
            return self.get("/ready").status_code == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self, timeout_s: float = 90.0) -> WorkerProcess:
        wait_until(self.ready, timeout_s=timeout_s, what=f"worker {self.url} ready")
        return self

    def wait_exit(self, timeout_s: float = 90.0) -> int:
        """Wait for the process to end by itself; returns its exit code."""
        assert self.proc is not None
        return self.proc.wait(timeout=timeout_s)

    def kill9(self) -> None:
        """SIGKILL: no shutdown, no commit, no flush."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM and wait; SIGKILL if it does not stop in time."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill9()


def conversation_event(tenant: str, session_id: str) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "session_id": session_id,
        "role": "user",
        "message": "hello from a test",
        "tenant": tenant,
    }


class TestProducer:
    """Produces valid conversation events through the project's record builder and murmur2."""

    __test__ = False  # not a pytest class

    def __init__(self, settings: Settings, topic: str = "conversation.inbound") -> None:
        self.spec = TopicRegistry(settings.topic_prefix).get(topic)
        self._producer = Producer(producer_config(settings, **{"linger.ms": 5}))
        self.sent: Counter[str] = Counter()

    def send(self, keys: Iterable[tuple[str, str]]) -> None:
        """One event per (tenant, session_id); `flush` to wait for the acks."""
        for tenant, session_id in keys:
            record = build_record(
                self.spec, conversation_event(tenant, session_id), RecordContext(tenant=tenant)
            )
            headers: list[tuple[str, str | bytes | None]] = list(record.headers)
            while True:
                try:
                    self._producer.produce(
                        record.topic, record.value, record.key.encode(), headers=headers
                    )
                    break
                except BufferError:
                    self._producer.poll(0.05)
            self._producer.poll(0)
            self.sent[record.key] += 1

    def flush(self) -> None:
        left = self._producer.flush(30)
        if left:
            raise RuntimeError(f"{left} test events not acknowledged")


def read_topic(settings: Settings, topic: str, timeout_s: float = 30.0) -> list[Any]:
    """Every record of a topic, from the beginning to its current end (confluent Messages)."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"read-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        partitions = sorted(metadata.topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        pending, records = set(partitions), []
        deadline = time.monotonic() + timeout_s
        while pending and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            error = msg.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    pending.discard(msg.partition())
                    continue
                raise RuntimeError(str(error))
            records.append(msg)
        if pending:
            raise TimeoutError(f"{topic}: partitions {sorted(pending)} not read to the end")
        return records
    finally:
        consumer.close()


def group_offsets(settings: Settings, group: str, topic: str) -> dict[int, tuple[int, int]]:
    """partition -> (offset `group` committed or the low watermark, high watermark)."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        tps = [TopicPartition(topic, p) for p in sorted(metadata.topics[topic].partitions)]
        out = {}
        for tp in consumer.committed(tps, timeout=10):
            low, high = consumer.get_watermark_offsets(tp, timeout=10)
            out[tp.partition] = (tp.offset if tp.offset >= 0 else low, high)
        return out
    finally:
        consumer.close()


def group_lag(settings: Settings, group: str, topic: str) -> int:
    """Records of `topic` not yet committed by `group` (its whole size if it committed none)."""
    return sum(
        high - committed for committed, high in group_offsets(settings, group, topic).values()
    )


def wait_committed(settings: Settings, group: str, topic: str, timeout_s: float = 90.0) -> None:
    """Wait until `group` committed every record of `topic`; the error shows what is left."""
    last: dict[int, tuple[int, int]] = {}

    def done() -> bool:
        nonlocal last
        last = group_offsets(settings, group, topic)
        return all(committed == high for committed, high in last.values())

    try:
        wait_until(done, timeout_s=timeout_s, what=f"{group} to commit all of {topic}")
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}; partition -> (committed, high): {last}") from None


def isolated_settings(**overrides: Any) -> Settings:
    """Settings with a fresh topic prefix, so a test sees only its own topics."""
    return Settings(topic_prefix=f"t{uuid.uuid4().hex[:12]}.", **overrides)


def create_topics(settings: Settings, names: Iterable[str]) -> None:
    """Create registry topics (prefix applied) the way `soma topics apply` does."""
    from topics.admin import apply_topics

    registry = TopicRegistry(settings.topic_prefix)
    report = apply_topics(settings, [registry.get(name) for name in names])
    if not report.ok:
        raise RuntimeError(f"fresh test topics drifted: {report.drift}")


def delete_test_topics(settings: Settings, *app_ids: str) -> None:
    """Delete the prefix's topics and the changelogs of the given app ids."""
    from topics.admin import admin_client, delete_topics

    names = admin_client(settings).list_topics(timeout=10).topics
    owned = (settings.topic_prefix, *(f"{app_id}-" for app_id in app_ids))
    delete_topics(settings, [n for n in names if settings.topic_prefix and n.startswith(owned)])


@contextmanager
def running_flows(
    settings: Settings, names: Iterable[str], directory: Path
) -> Iterator[dict[str, WorkerProcess]]:
    """One worker of each named flow, in the flow's default group (what the gateway reads),
    ready on entry; stopped, and their changelogs deleted with the prefix's topics, after."""
    from flows.catalog import flow_spec
    from tests.support.processes import free_port

    workers = {
        name: WorkerProcess(
            name,
            settings,
            f"{settings.topic_prefix}{flow_spec(name).app_id}",
            free_port(),
            directory / name,
            directory / f"{name}.log",
        ).start()
        for name in names
    }
    try:
        for worker in workers.values():
            worker.wait_ready()
        yield workers
    finally:
        for worker in workers.values():
            worker.stop()
        delete_test_topics(settings, *(w.app_id for w in workers.values()))
