"""Always-on flow: count conversation events per `tenant/session_id` in a changelog-backed table."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import faust
import orjson
from faust.types import TP, EventT
from faust.web import Request, Response, View

from flows.app import ensure_changelog, topic_partitions, worker_ready
from flows.commit_order import DurableTable, run_batches, write_batch
from flows.errors import NotCoPartitioned
from processors.keys import KeyRule
from processors.partitioning import partition_for
from processors.session_counts import EMPTY, SessionCount, fold_batch
from soma.settings import Settings
from topics.registry import TopicRegistry

log = logging.getLogger(__name__)

DEFAULT_APP_ID = "soma-session-counts"
SOURCE = "conversation.inbound"  # registry name; the settings' topic prefix is applied
TABLE = "session_counts"
BATCH_MAX = 500  # per-event agents top out near 5k/s here; batches halve Faust's overhead
BATCH_WITHIN_S = 0.05
STATE_PATH = "/state/session-counts/{key:.+}"  # keys contain '/'


@dataclass(frozen=True)
class SessionCountsFlow:
    """The wired flow: what the agent reads, what it writes, and how many partitions both have."""

    app: faust.App
    source: str
    partitions: int
    table: DurableTable

    def source_tp(self, key: str) -> TP:
        return TP(self.source, partition_for(key.encode(), self.partitions))

    def read(self, key: str) -> SessionCount:
        raw = self.table.get(key.encode())
        return EMPTY if raw is None else SessionCount.from_dict(orjson.loads(raw))


def build(app: faust.App, settings: Settings) -> SessionCountsFlow:
    """Declare the source topic, the table (creating its changelog) and the agent on `app`."""
    source = TopicRegistry(settings.topic_prefix).get(SOURCE).name
    partitions = topic_partitions(settings, source)
    topic = app.topic(source, key_type=bytes, value_type=bytes, partitions=partitions)
    table = app.Table(
        TABLE, key_type=bytes, value_type=bytes, partitions=partitions, use_partitioner=True
    )
    assert isinstance(table, DurableTable)  # create_app() makes every table durable
    ensure_changelog(
        settings, table.changelog_topic.get_topic_name(), partitions, KeyRule.TENANT_SESSION
    )
    flow = SessionCountsFlow(app=app, source=source, partitions=partitions, table=table)

    @app.agent(topic, name="session-counts")
    async def count_sessions(stream: faust.StreamT) -> None:
        # take_events, not take: the fold needs each event's offset, not only its value.
        batches = cast(faust.Stream, stream).take_events(BATCH_MAX, within=BATCH_WITHIN_S)
        await run_batches(batches, lambda events: count_batch(flow, events))

    _register_state_page(flow)
    return flow


async def count_batch(flow: SessionCountsFlow, events: Sequence[EventT]) -> None:
    """Fold one batch into the table; returns once its changelog records are durable."""
    actives = flow.app.assignor.assigned_actives()
    pairs: list[tuple[str, int]] = []
    last_event: dict[str, EventT] = {}
    for event in events:
        message = event.message
        if message.tp not in actives:
            continue  # revoked while buffered: its new owner replays it from the commit
        if message.key is None or not _is_json_object(message.value):
            # Every producer validates, so this came from a foreign one; skipped (not failed)
            # until the DLQ policy exists to take it.
            log.warning("not counted: %s[%s]@%s", message.topic, message.partition, message.offset)
            continue
        key = message.key.decode()
        pairs.append((key, message.offset))
        last_event[key] = event
    folded = fold_batch({key: flow.read(key) for key in last_event}, pairs)
    writes = []
    for key, state in folded.items():
        event = last_event[key]
        expected = partition_for(key.encode(), flow.partitions)
        if expected != event.message.partition:
            raise NotCoPartitioned(
                event.message.topic, event.message.partition, event.message.offset, expected
            )
        writes.append((key.encode(), orjson.dumps(state.to_dict()), event))
    await write_batch(flow.table, writes)


def _is_json_object(value: object) -> bool:
    if not isinstance(value, bytes | bytearray | memoryview | str):
        return False
    try:
        return isinstance(orjson.loads(value), dict)
    except orjson.JSONDecodeError:
        return False


def _register_state_page(flow: SessionCountsFlow) -> None:
    app = flow.app

    @app.page(STATE_PATH)
    async def session_count(web: View, request: Request, key: str) -> Response:
        tp = flow.source_tp(key)
        if tp not in app.assignor.assigned_actives():
            return web.json({"key": key, "partition": tp.partition, "owner": False}, status=421)
        if not worker_ready(app):
            # Owner, but restoring or rebalancing: the value may be stale.
            return web.json(
                {"key": key, "partition": tp.partition, "owner": True, "ready": False},
                status=503,
                headers={"Retry-After": "1"},
            )
        state = flow.read(key)
        return web.json(
            {
                "key": key,
                "count": state.count,
                "offset": state.offset,
                "partition": tp.partition,
                "owner": True,
            }
        )
