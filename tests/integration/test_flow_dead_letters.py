"""One dead-letter policy: poison records land in the DLQ with full context, the flow goes on,
good records count exactly, and a burst of poison halts the flow instead of draining it."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer

from processors.partitioning import partition_for
from soma.halts import EXIT_HALTED, read_halted
from soma.settings import Settings
from tests.support.flows import (
    TestProducer,
    WorkerProcess,
    conversation_event,
    group_offsets,
    read_topic,
    wait_committed,
)
from topics.producer import producer_config

pytestmark = pytest.mark.integration

GOOD_KEYS = [("acme", f"s{i}") for i in range(6)]


class RawProducer:
    """A foreign producer: sends whatever bytes it is given, where it is told."""

    def __init__(self, settings: Settings) -> None:
        self.topic = settings.topic_prefix + "conversation.inbound"
        self._producer = Producer(producer_config(settings))

    def send(
        self,
        key: bytes | None,
        value: bytes,
        *,
        partition: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        kwargs: dict[str, Any] = {"headers": headers or []}
        if partition is not None:
            kwargs["partition"] = partition
        self._producer.produce(self.topic, value, key, **kwargs)
        assert self._producer.flush(10) == 0


def valid_value(tenant: str, session: str) -> bytes:
    return orjson.dumps(conversation_event(tenant, session))


def test_poison_is_dead_lettered_with_context_and_good_records_count_exactly(
    flow_stack: tuple[Settings, str], flow_worker_factory: Callable[..., WorkerProcess]
) -> None:
    settings, app_id = flow_stack
    good, raw = TestProducer(settings), RawProducer(settings)
    wrong = (partition_for(b"acme/p4", 6) + 1) % 6
    poison: dict[str, tuple[bytes | None, bytes, dict[str, Any]]] = {
        "not_json": (b"acme/p1", b"\x00not json{", {}),
        "schema": (b"acme/p2", orjson.dumps({"tenant": "acme", "session_id": "p2"}), {}),
        "no_key": (None, valid_value("acme", "p3"), {"headers": [("tenant", b"acme")]}),
        "wrong_partition": (b"acme/p4", valid_value("acme", "p4"), {"partition": wrong}),
        "oversized": (b"acme/p5", b'{"m":"' + b"x" * 600_000 + b'"}', {}),
        "tenant": (b"acme/p6", valid_value("other", "p6"), {}),
    }
    for key, value, extra in poison.values():
        good.send(GOOD_KEYS)  # poison between good records
        good.flush()
        raw.send(key, value, **extra)
    good.send(GOOD_KEYS)
    good.flush()

    worker = flow_worker_factory("state").wait_ready()
    source = settings.topic_prefix + "conversation.inbound"
    wait_committed(settings, app_id, source)

    # Good records: exact. Poison keys: not counted.
    for tenant, session in GOOD_KEYS:
        body = worker.get(f"/state/session-counts/{tenant}%2F{session}").json()
        assert body["count"] == 7
    for key in ("p1", "p2", "p4", "p5", "p6"):
        assert worker.get(f"/state/session-counts/acme%2F{key}").json()["count"] == 0

    letters = read_topic(settings, settings.topic_prefix + "conversation.inbound.dlq")
    envelopes = [orjson.loads(r.value()) for r in letters]
    reasons = sorted(e["reason"] for e in envelopes)
    # The tenant mismatch is a schema-level refusal: two "schema" letters.
    assert reasons == sorted(
        ["not_json", "schema", "schema", "no_key", "wrong_partition", "oversized"]
    )

    for envelope, record in zip(envelopes, letters, strict=True):
        assert envelope["consumer_group"] == app_id and envelope["flow"] == "session-counts"
        assert envelope["source_topic"] == source
        assert envelope["attempts"] == 1 and envelope["stack"] and envelope["error_class"]
        position = f"{source}:{envelope['source_partition']}:{envelope['source_offset']}"
        assert envelope["dlq_id"] == position
        # The raw key and value come back byte for byte; the DLQ record keeps the key.
        original_key = envelope["original_key"]
        # The DLQ record's key: the original key, else the tenant the headers name.
        assert record.key().decode() == (original_key or "acme")
        raw_value = base64.b64decode(envelope["original_value"])
        matches = [p for p in poison.values() if p[1] == raw_value]
        assert len(matches) == 1, "every dead letter carries exactly one poison record's value"
        sent_key, _, extra = matches[0]
        assert original_key == (sent_key.decode() if sent_key else None)
        assert envelope["tenant"] == "acme"  # from the key, or the header when there is none
        sent_headers = [(n, base64.b64encode(v).decode()) for n, v in extra.get("headers", [])]
        assert [(h["name"], h["value"]) for h in envelope["original_headers"]] == sent_headers
        assert envelope["original_timestamp"] > 0
    wrong_letter = next(e for e in envelopes if e["reason"] == "wrong_partition")
    assert wrong_letter["source_partition"] == wrong
    assert "murmur2" in wrong_letter["error_message"]

    metrics = worker.get("/metrics", internal=False).text
    line = next(
        m
        for m in metrics.splitlines()
        if m.startswith("soma_flow_dead_letters_total{") and 'reason="schema"' in m
    )
    assert line.endswith(" 2.0")


def test_a_burst_of_poison_halts_the_flow_with_its_reason(
    flow_stack: tuple[Settings, str], flow_worker_factory: Callable[..., WorkerProcess]
) -> None:
    settings, app_id = flow_stack
    good, raw = TestProducer(settings), RawProducer(settings)
    good.send(GOOD_KEYS * 5)
    good.flush()
    for i in range(150):  # a bad deploy: every record fails
        raw.send(f"acme/bad{i % 7}".encode(), b"<html>not json</html>")

    worker = flow_worker_factory("state")
    assert worker.wait_exit(timeout_s=90) == EXIT_HALTED
    log = worker.log_path.read_text()
    assert "flow session-counts halted" in log and "consecutive dead letters" in log
    halted = read_halted(settings.stack_dir, app_id, worker.port)
    assert halted is not None and "consecutive dead letters" in str(halted["reason"])

    # The DLQ did not receive the whole burst, and the burst is not committed: after the fix,
    # a restarted worker takes it up again from the last committed offset.
    letters = read_topic(settings, settings.topic_prefix + "conversation.inbound.dlq")
    assert len(letters) <= 100
    source = settings.topic_prefix + "conversation.inbound"
    uncommitted = sum(
        high - done for done, high in group_offsets(settings, app_id, source).values()
    )
    assert uncommitted >= 150 - len(letters)
