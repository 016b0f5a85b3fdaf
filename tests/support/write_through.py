"""Write-through on the real stack: topics, traffic, and what the backend and the WAL hold."""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg
from confluent_kafka import Producer

from processors.write_plan import SOURCE_KINDS, PlannedWrite, plan_write, rfc3339
from soma.settings import Settings
from tests.support.flows import read_topic, wait_committed
from tests.support.write_events import Turn, as_event, memory_write
from topics.producer import producer_config
from topics.records import RecordContext, build_record
from topics.registry import TopicRegistry

SOURCES = tuple(SOURCE_KINDS)
TOPICS = (*SOURCES, *(f"{s}.dlq" for s in SOURCES), "memory.wal", "memory.outbox")
NAMESPACE = "somastream"  # Settings().namespace: what the worker writes conversation events to
SPREAD = 60  # how far (in events) traffic is shuffled

Sent = tuple[str, dict[str, Any]]  # (registry topic, event)


def turn_traffic(tenants: Sequence[str], sessions: int, turns: int, writes: int) -> list[Sent]:
    """`turns` turns (user, reply, tool result) over tenants x sessions, plus `writes`
    explicit memory writes (seeded: the same list every run).

    Events move up to SPREAD places from where their turn started, so a reply or a tool
    result often comes before the user message it belongs to, as it does when the flow reads
    one source topic ahead of another; never dozens of turns of its session apart, which the
    bounded turn state would forget (processors/turn_links.py).
    """
    rng = random.Random(7)
    now = rfc3339(datetime.now(UTC))
    traffic: list[Sent] = []
    for n in range(turns):
        turn = Turn(tenants[n % len(tenants)], f"s{rng.randrange(sessions)}", n)
        traffic.extend((topic, {**event, "occurred_at": now}) for topic, event in turn.events())
    for n in range(writes):
        tenant = tenants[n % len(tenants)]
        write = memory_write(tenant, f"m{n % 50}", n, occurred_at=now)
        traffic.insert(rng.randrange(len(traffic) + 1), ("memory.requests", write))
    spread = [(i + rng.uniform(0, SPREAD), sent) for i, sent in enumerate(traffic)]
    return [sent for _, sent in sorted(spread, key=lambda pair: pair[0])]


def planned(sent: Iterable[Sent]) -> dict[str, PlannedWrite]:
    """memory key -> the write the flow must make for each sent event."""
    out: dict[str, PlannedWrite] = {}
    for topic, event in sent:
        write = plan_write(as_event(topic, event), SOURCE_KINDS[topic], NAMESPACE)
        out[write.write.key] = write
    return out


def turn_links(sent: Iterable[Sent]) -> set[tuple[str, str, str]]:
    """(from, to, type) of every link the sent turns call for."""
    by_trace: dict[tuple[str, str, str], dict[str, str]] = {}
    for topic, event in sent:
        if topic == "memory.requests":
            continue
        key = plan_write(as_event(topic, event), SOURCE_KINDS[topic], NAMESPACE).write.key
        role = "tool" if topic == "tool.results" else str(event["role"])
        trace = (event["tenant"], event["session_id"], event["trace_context"]["traceparent"])
        by_trace.setdefault(trace, {})[role] = key
    return {
        (ends["user"], ends[role], kind)
        for ends in by_trace.values()
        for role, kind in (("assistant", "reply"), ("tool", "tool_result"))
        if "user" in ends and role in ends
    }


class TrafficProducer:
    """Sends write-through traffic the way the gateway does: validated, murmur2, headers."""

    def __init__(self, settings: Settings, delivery_timeout_s: float = 120.0) -> None:
        self.registry = TopicRegistry(settings.topic_prefix)
        # A long delivery timeout: traffic sent while the broker restarts waits, not fails.
        timeout_ms = int(delivery_timeout_s * 1000)
        self._producer = Producer(
            producer_config(settings, **{"linger.ms": 5, "message.timeout.ms": timeout_ms})
        )
        self.sent: list[Sent] = []
        self.failed: list[Any] = []  # delivery errors: traffic the broker never stored

    def send(self, traffic: Iterable[Sent]) -> None:
        for topic, event in traffic:
            trace = (event.get("trace_context") or {}).get("traceparent")
            context = RecordContext(tenant=event["tenant"], traceparent=trace)
            record = build_record(self.registry.get(topic), event, context)
            headers: list[tuple[str, str | bytes | None]] = list(record.headers)
            while True:
                try:
                    self._producer.produce(
                        record.topic,
                        record.value,
                        record.key_bytes(),
                        headers=headers,
                        on_delivery=self._delivered,
                    )
                    break
                except BufferError:
                    self._producer.poll(0.05)
            self._producer.poll(0)
            self.sent.append((topic, event))

    def _delivered(self, error: Any, _message: Any) -> None:
        if error is not None:
            self.failed.append(error)

    def flush(self) -> None:
        left = self._producer.flush(180)
        if left or self.failed:
            raise RuntimeError(f"{left} events unacknowledged, failed: {self.failed[:3]}")


class Feeder(threading.Thread):
    """Sends traffic in paced chunks from a thread, so kills land while the worker is busy."""

    def __init__(
        self, producer: TrafficProducer, traffic: list[Sent], chunk: int = 30, pause_s: float = 0.1
    ) -> None:
        super().__init__(daemon=True)
        self.producer, self.traffic, self.chunk, self.pause_s = producer, traffic, chunk, pause_s
        self.done = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for start in range(0, len(self.traffic), self.chunk):
                self.producer.send(self.traffic[start : start + self.chunk])
                self.producer.flush()
                self.done.wait(self.pause_s)
        except BaseException as exc:
            self.error = exc
        finally:
            self.done.set()


def _scoped(settings: Settings, tenant: str) -> psycopg.Connection[Any]:
    conn = psycopg.connect(settings.postgres_dsn, autocommit=False)
    conn.execute(
        "SELECT set_config('soma.tenant', %s, false), set_config('soma.namespace', %s, false),"
        " set_config('soma.universe', 'default', false)",
        (tenant, NAMESPACE),
    )
    return conn


def stored(settings: Settings, tenants: Iterable[str]) -> dict[str, Any]:
    """memory key -> stored value, for every row of the tenants (RLS: one scope at a time)."""
    rows: dict[str, Any] = {}
    for tenant in tenants:
        with _scoped(settings, tenant) as conn:
            for key, value in conn.execute("SELECT key, value FROM memory_items"):
                rows[key] = value
    return rows


def stored_count(settings: Settings, tenants: Iterable[str]) -> int:
    total = 0
    for tenant in tenants:
        with _scoped(settings, tenant) as conn:
            row = conn.execute("SELECT count(*) FROM memory_items").fetchone()
            total += int(row[0]) if row else 0
    return total


def stored_links(settings: Settings, tenants: Iterable[str]) -> set[tuple[str, str, str]]:
    links: set[tuple[str, str, str]] = set()
    for tenant in tenants:
        with _scoped(settings, tenant) as conn:
            links.update(conn.execute("SELECT from_key, to_key, type FROM memory_links"))
    return links


def topic_values(settings: Settings, topic: str) -> list[dict[str, Any]]:
    """Every record value of a registry topic (prefix applied), decoded."""
    return [orjson.loads(r.value()) for r in read_topic(settings, settings.topic_prefix + topic)]


def duplicates(values: Iterable[dict[str, Any]], field_name: str) -> Counter[str]:
    """Values of `field_name` seen more than once, with their counts."""
    counts = Counter(str(v[field_name]) for v in values)
    return Counter({k: n for k, n in counts.items() if n > 1})


def assert_exactly_once(
    settings: Settings, app_id: str, memory: Settings, tenants: list[str], sent: list[Sent]
) -> list[dict[str, Any]]:
    """Everything committed; the backend, the WAL and the links hold each event exactly once."""
    for source in SOURCES:
        wait_committed(settings, app_id, settings.topic_prefix + source, timeout_s=120)
    expected = planned(sent)
    assert len(expected) == len(sent)
    rows = stored(memory, tenants)  # the key is the primary key: a row per key at most
    assert rows.keys() == expected.keys(), "every event stored, nothing else"
    assert rows == {key: dict(write.write.value) for key, write in expected.items()}
    wal = topic_values(settings, "memory.wal")
    assert {r["memory_key"] for r in wal} == expected.keys()
    assert not duplicates(wal, "idempotency_key"), "one WAL record per write"
    for record in wal:
        assert record["payload"] == dict(expected[record["memory_key"]].write.value)
    links, wanted = stored_links(memory, tenants), turn_links(sent)
    assert links == wanted, (
        f"{len(wanted - links)} links missing, {len(links - wanted)} extra; "
        f"missing (from, to, type): {sorted(wanted - links)[:5]}"  # to tell which turns lost one
    )
    assert topic_values(settings, "memory.outbox") == []
    for source in SOURCES:
        assert topic_values(settings, f"{source}.dlq") == []
    return wal
