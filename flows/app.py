"""Faust app factory shared by every always-on flow: driver, store, data dir, web and identity."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import faust
from faust.tables.manager import TableManager
from faust.web import Request, Response, View

from flows.commit_order import DurableTable
from flows.errors import ChangelogMismatch, SourceTopicMissing
from flows.faust_fixes import SomaTableManager
from processors.keys import KeyRule
from processors.worker_identity import worker_client_id
from soma.settings import Settings
from topics.admin import admin_client, apply_topics
from topics.registry import TopicSpec


@dataclass(frozen=True)
class WorkerSpec:
    """One worker process of a flow: its consumer group, web endpoint and state directory."""

    app_id: str  # also the consumer group id and the prefix of changelog topic names
    port: int
    host: str = "127.0.0.1"
    data_dir: Path | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def resolved_data_dir(self, settings: Settings) -> Path:
        """The CLI-given directory, else `<stack_dir>/flows/<app_id>/<port>`."""
        if self.data_dir is not None:
            return self.data_dir
        return settings.stack_dir / "flows" / self.app_id / str(self.port)


def create_app(settings: Settings, spec: WorkerSpec, **overrides: Any) -> faust.App:
    """A Faust app configured the one way SomaStream runs Faust."""
    data_dir = spec.resolved_data_dir(settings)
    data_dir.mkdir(parents=True, exist_ok=True)
    conf: dict[str, Any] = {
        # aiokafka driver: Faust's confluent:// driver never received its assignment here.
        "broker": [f"kafka://{host.strip()}" for host in settings.kafka_bootstrap.split(",")],
        "store": "rocksdb://",  # rocksdict, picked up by faust-streaming when importable
        "datadir": str(data_dir),
        "Table": DurableTable,  # every table acks its batch only after its changelog is durable
        "TableManager": SomaTableManager,  # seek before resuming after recovery (faust_fixes)
        "web_enabled": True,
        "web_bind": spec.host,
        "web_host": spec.host,
        "web_port": spec.port,
        # The gateway maps a group member to this worker's web endpoint through the client id.
        "broker_client_id": worker_client_id(spec.host, spec.port),
        "producer_acks": -1,
        # A killed worker's partitions stay unowned until its session expires: Faust's 60 s
        # default meant a minute of 503s from the state API after every kill -9.
        "broker_session_timeout": 10.0,
        "broker_heartbeat_interval": 1.0,
        "consumer_auto_offset_reset": "earliest",
        # Registry topics belong to `soma topics apply` and changelogs to ensure_changelog();
        # Faust creates nothing, so a typo cannot silently create a topic with wrong settings.
        "topic_allow_declare": False,
        "topic_disable_leader": True,  # no @app.timer(on_leader=True) anywhere
        "autodiscover": False,
    }
    conf.update(overrides)
    app = faust.App(spec.app_id, **conf)
    _register_ready_page(app)
    return app


def worker_ready(app: faust.App) -> bool:
    """True once the worker holds an assignment and its tables are recovered."""
    recovery = cast(TableManager, app.tables).recovery
    return not app.rebalancing and not app.in_recovery and recovery.completed.is_set()


def _register_ready_page(app: faust.App) -> None:
    @app.page("/ready")
    async def ready(web: View, request: Request) -> Response:
        ok = worker_ready(app)
        actives = sorted(f"{tp.topic}:{tp.partition}" for tp in app.assignor.assigned_actives())
        return web.json(
            {"ready": ok, "app_id": app.conf.id, "actives": actives}, status=200 if ok else 503
        )


def topic_partitions(settings: Settings, topic: str, timeout_s: float = 10.0) -> int:
    """How many partitions a topic has; raises SourceTopicMissing when it does not exist."""
    metadata = admin_client(settings).list_topics(topic=topic, timeout=timeout_s)
    found = metadata.topics.get(topic)
    if found is None or found.error is not None or not found.partitions:
        raise SourceTopicMissing(topic)
    return len(found.partitions)


def ensure_changelog(settings: Settings, name: str, partitions: int, key_rule: KeyRule) -> None:
    """Create a table's compacted changelog with the source's partition count, or refuse drift.

    The changelog partition of a key must equal its source partition (tables use murmur2 of
    the same key bytes), so a changelog with another partition count is fatal.
    """
    spec = TopicSpec(
        name=name,
        partitions=partitions,
        key_rule=key_rule,
        schema="changelog",
        cleanup_policy="compact",
        description="Faust table changelog",
    )
    report = apply_topics(settings, [spec])
    if name in report.drift:
        raise ChangelogMismatch(name, report.drift[name])
