"""Build and run one worker of a flow from its spec: the Faust app, tables, agent and pages."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import faust
from faust.types import TP, EventT

from flows.catalog import flow_spec
from flows.errors import ChangelogMismatch, PartitionCountMismatch, SourceTopicMissing
from flows.kit.batches import FlowRuntime
from flows.kit.commit import run_batches
from flows.kit.dead_letters import halt
from flows.kit.faust_internals import (
    DurableTable,
    SomaTableManager,
    assigned_actives,
    commit_offsets,
    earliest_offset,
    fetched_before_rebalance,
    seek,
    start_positions,
    stream_buffer,
    watch_stream_buffer,
)
from flows.kit.pages import register_pages
from flows.kit.sweeps import SweepRunner
from flows.kit.telemetry import count_rebalances
from flows.spec import FlowSpec, WorkerInfo, current_worker
from processors.worker_identity import worker_client_id
from soma.halts import clear_halted
from soma.queues import QueueMeter
from soma.settings import Settings, get_settings
from soma.tracing import configure_tracing
from topics.admin import apply_topics, partition_counts
from topics.producer import EventProducer
from topics.registry import DLQ_MAX_MESSAGE_BYTES, TopicRegistry, TopicSpec


@dataclass(frozen=True)
class WorkerPlace:
    """Where one worker process of a flow runs: its group, web endpoint and state directory."""

    app_id: str  # consumer group id and prefix of changelog topic names
    port: int
    host: str = "127.0.0.1"
    data_dir: Path | None = None

    def resolved_data_dir(self, settings: Settings) -> Path:
        """The given directory, else `<stack_dir>/flows/<app_id>/<port>`."""
        if self.data_dir is not None:
            return self.data_dir
        return settings.stack_dir / "flows" / self.app_id / str(self.port)


def default_app_id(spec: FlowSpec, settings: Settings) -> str:
    """The group of a flow: a topic prefix isolates a whole stack, so its groups too."""
    return f"{settings.topic_prefix}{spec.app_id}"


def create_app(settings: Settings, place: WorkerPlace) -> faust.App:
    """A Faust app configured the one way SomaStream runs Faust."""
    data_dir = place.resolved_data_dir(settings)
    data_dir.mkdir(parents=True, exist_ok=True)
    conf: dict[str, Any] = {
        # aiokafka driver: Faust's confluent:// driver never received its assignment here.
        "broker": [f"kafka://{host.strip()}" for host in settings.kafka_bootstrap.split(",")],
        "store": "rocksdb://",  # rocksdict, picked up by faust-streaming when importable
        "datadir": str(data_dir),
        "Table": DurableTable,  # every table can await its changelog (commit order step 3)
        "TableManager": SomaTableManager,  # seek before resuming after recovery
        "web_enabled": True,
        "web_bind": place.host,
        "web_host": place.host,
        "web_port": place.port,
        # Group members are named after their web endpoint: the gateway finds a key's owner.
        "broker_client_id": worker_client_id(place.host, place.port),
        "producer_acks": -1,
        # A killed worker's partitions stay unowned until its session expires: Faust's 60 s
        # default meant a minute of 503s from the state API after every kill -9.
        "broker_session_timeout": 10.0,
        "broker_heartbeat_interval": 1.0,
        "consumer_auto_offset_reset": "earliest",
        # Bounded buffers (soma/settings.py says why these sizes). The stream buffer holds
        # records fetched and not yet taken into a batch; at 80 % of it Faust stops fetching
        # the partition and resumes at 40 %, so a slow handler pushes back on fetching.
        "stream_buffer_maxsize": settings.flow_stream_buffer_max,
        # aiokafka's max_partition_fetch_bytes: the fetcher holds at most one response per
        # owned partition that the stream has not taken yet.
        "consumer_max_fetch_size": settings.flow_fetch_max_bytes,
        # Registry topics belong to `soma topics apply` and changelogs to ensure_changelog();
        # Faust creates nothing, so a typo cannot silently create a topic with wrong settings.
        "topic_allow_declare": False,
        "topic_disable_leader": True,  # no @app.timer(on_leader=True) anywhere
        "autodiscover": False,
    }
    return faust.App(place.app_id, **conf)


def source_partitions(settings: Settings, sources: list[TopicSpec], sinks: list[str]) -> int:
    """The sources' common partition count (the co-partition check); every sink must exist."""
    names = [spec.name for spec in sources]
    found = partition_counts(settings, sorted({*names, *sinks}))
    missing = sorted(name for name, count in found.items() if count is None)
    if missing:
        raise SourceTopicMissing(", ".join(missing))
    counts = {name: int(found[name] or 0) for name in names}
    if len(set(counts.values())) != 1:
        raise PartitionCountMismatch(counts)
    return next(iter(counts.values()))


def ensure_changelog(settings: Settings, name: str, partitions: int) -> None:
    """Create a table's compacted changelog with the sources' partition count, or refuse drift."""
    from processors.keys import KeyRule

    spec = TopicSpec(
        name=name,
        partitions=partitions,
        key_rule=KeyRule.ORIGINAL,
        schema="changelog",
        cleanup_policy="compact",
        description="Faust table changelog",
    )
    report = apply_topics(settings, [spec])
    if name in report.drift:
        raise ChangelogMismatch(name, report.drift[name])


def build_worker(spec: FlowSpec, settings: Settings, place: WorkerPlace) -> faust.App:
    """The app of one worker of `spec`, with its agent, tables and pages (nothing started)."""
    app = create_app(settings, place)
    registry = TopicRegistry(settings.topic_prefix)
    sources = [registry.get(name) for name in spec.sources]
    sinks = [s.dlq for s in sources if s.dlq] + [registry.get(o).name for o in spec.outputs]
    partitions = source_partitions(settings, sources, sinks)
    topic = app.topic(
        *[s.name for s in sources],
        key_type=bytes,
        value_type=bytes,
        # Raw bytes in, decoded by the kit's intake: with Faust's default JSON serializer a
        # value that is not JSON made the stream stop delivering (seen here), not fail.
        key_serializer="raw",
        value_serializer="raw",
        partitions=partitions,
    )
    tables: dict[str, DurableTable] = {}
    for table_spec in spec.tables:
        table = app.Table(
            table_spec.name,
            key_type=bytes,
            value_type=bytes,
            partitions=partitions,
            # The changelog partition of a write is the partition of the source event the kit
            # writes it for (`acting_for`), which the kit checked is murmur2(partition key).
            use_partitioner=False,
        )
        assert isinstance(table, DurableTable)  # create_app() makes every table durable
        ensure_changelog(settings, table.changelog_topic.get_topic_name(), partitions)
        tables[table_spec.name] = table

    def halt_worker(reason: str) -> None:
        halt(settings.stack_dir, place.app_id, place.port, spec.name, reason)

    runtime = FlowRuntime(
        spec=spec,
        settings=settings,
        app_id=place.app_id,
        partitions=partitions,
        tables=tables,
        owned=lambda: cast(set[TP], assigned_actives(app)),
        rebalancing=lambda: bool(app.rebalancing),
        stale=lambda event: fetched_before_rebalance(app, event),
        generation=lambda: int(app.consumer_generation_id),
        start_positions=lambda: start_positions(app),
        commit_offsets=lambda offsets: commit_offsets(app, offsets),
        seek=lambda tp, offset: seek(app, tp, offset),
        earliest_offset=lambda tp: earliest_offset(app, tp),
        halt=halt_worker,
    )

    sweeper = SweepRunner(runtime, spec.sweep, sources[0].name) if spec.sweep else None

    @app.agent(topic, name=spec.name)
    async def run_flow(stream: faust.StreamT) -> None:
        async with AsyncExitStack() as stack:
            producer = EventProducer(
                settings,
                registry,
                queue_name="flow_producer",
                **{"message.max.bytes": DLQ_MAX_MESSAGE_BYTES + 65536},
            )
            stack.callback(producer.close)
            runtime.producer = producer
            if spec.resources is not None:
                current_worker.set(WorkerInfo(place.app_id, place.port))
                runtime.resources = await stack.enter_async_context(spec.resources(settings))
            if sweeper is not None:
                task = asyncio.create_task(sweeper.run_forever(), name=f"{spec.name}-sweep")
                stack.callback(task.cancel)
            _, batch_buffer = buffer_meters(stream, spec)

            async def process(batch: Sequence[EventT]) -> None:
                batch_buffer.add(len(batch))  # take_events hands over at most max_events
                try:
                    await runtime.process(batch)
                finally:
                    batch_buffer.remove(len(batch))

            batches = cast(faust.Stream, stream).take_events(
                spec.batch.max_events, within=spec.batch.within_s
            )
            await run_batches(batches, process)

    register_pages(app, runtime, sources[0].name)
    count_rebalances(app, spec.name, {s.name for s in sources})
    clear_halted(settings.stack_dir, place.app_id, place.port)
    return app


def buffer_meters(stream: faust.StreamT, spec: FlowSpec) -> tuple[QueueMeter, QueueMeter]:
    """Meters of the agent's stream buffer (its depth seen after every put) and of the batch
    in hand (take_events' buffer, at most the spec's max_events)."""
    queue = stream_buffer(stream)
    buffered = QueueMeter("flow_stream_buffer", int(queue.maxsize), depth=queue.qsize)
    watch_stream_buffer(queue, buffered.observe)
    return buffered, QueueMeter("flow_batch_buffer", spec.batch.max_events)


def prepare_worker(
    name: str,
    *,
    port: int | None = None,
    data_dir: Path | None = None,
    app_id: str | None = None,
    settings: Settings | None = None,
) -> tuple[faust.App, WorkerPlace]:
    """Build the app of flow `name` for one worker (nothing started yet)."""
    settings = settings or get_settings()
    spec = flow_spec(name)
    place = WorkerPlace(
        app_id=app_id or default_app_id(spec, settings),
        host=settings.worker_host,
        port=port or settings.worker_base_port,
        data_dir=data_dir,
    )
    return build_worker(spec, settings, place), place


def run_worker(
    name: str,
    *,
    port: int | None = None,
    data_dir: Path | None = None,
    app_id: str | None = None,
    loglevel: str = "info",
) -> None:
    """Start the worker and block until it is stopped (SIGTERM/SIGINT stop it cleanly)."""
    configure_tracing(f"somastream-{name}")  # off unless OTEL_* (or SOMA_TRACES_FILE) says
    app, _ = prepare_worker(name, port=port, data_dir=data_dir, app_id=app_id)
    tune_garbage_collector()
    faust.Worker(app, loglevel=loglevel).execute_from_commandline()


# A worker allocates a few short-lived objects per event and keeps a large, long-lived heap
# (Faust, the broker clients, buffered records); with CPython's default gen-0 threshold (700)
# collections ran every few events and walked that heap. Measured on the write-through flow
# (20k events): 440-500 us of CPU per event by default, 340-365 us with these thresholds.
GC_THRESHOLDS = (50_000, 20, 100)


def tune_garbage_collector() -> None:
    """Collect less often, and leave what start-up built out of every later collection."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
