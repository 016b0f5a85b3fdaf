"""What replay sinks share (retries, failure, the one-partition sink), and the topic sink.

The memory-backend sink is in `flows/jobs/memory_sink.py`, the archive sink in
`flows/jobs/archive_sink.py`.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from typing import Any, TypeVar, cast

import orjson
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import KafkaError, Message, Producer

from flows.jobs.sources import Record
from processors.policies import Backoff
from processors.replay import REPLAY_JOB, REPLAY_OF, ReplayTally
from schemas import SchemaValidationError, validator
from soma.errors import SomaError
from soma.settings import Settings
from topics.producer import producer_config
from topics.registry import TopicSpec

log = logging.getLogger(__name__)
T = TypeVar("T")
RETRY = Backoff(base_s=0.5, cap_s=15.0)
MAX_ATTEMPTS = 20  # about 4 minutes of a target being down before the replay gives up
_MARKS = frozenset({REPLAY_OF, REPLAY_JOB})


class ReplayFailed(SomaError):
    """The target stayed unavailable (or refused records for good): the replay stopped.

    Rerun the same command: every target is idempotent, so records already written are
    no-ops the second time.
    """


def where(record: Record) -> str:
    return f"{record.topic()}:{record.partition()}:{record.offset()}"


class Writer(StatelessSinkPartition[Record]):
    """A replay's sink partition; `abort` releases it after a failed run."""

    def abort(self) -> None:
        self.close()


class _Once(DynamicSink[Any]):
    """A sink with exactly one partition (the replay runs one Bytewax worker)."""

    def __init__(self, partition: StatelessSinkPartition[Any]) -> None:
        self.partition = partition

    def build(self, step_id: str, worker_index: int, worker_count: int) -> Any:
        if worker_count != 1:
            raise ReplayFailed("a replay runs on one Bytewax worker")
        return self.partition


Outgoing = tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]]]  # key, value, headers


class TopicWriter(Writer):
    """Validate against the target's schema, produce with murmur2 keys, make sure of every ack.

    Batches are produced without waiting (a flush per batch held the read behind every
    broker round trip); delivery reports are served as batches go, a record the broker did
    not acknowledge is produced again, and `close` flushes and retries until every record is
    acknowledged or the replay fails. `written` counts acknowledgements only.

    With `trust_schema_header` (the source is a topic, not a file) a record whose `schema`
    header names the target's schema is not validated again: the project's producer path
    validated exactly these bytes before they first left a process, and it is the only one
    that sets the header. Anything else (a foreign producer's record) is validated.
    """

    def __init__(
        self,
        settings: Settings,
        target: TopicSpec,
        job_id: str,
        tally: ReplayTally,
        *,
        trust_schema_header: bool = False,
    ):
        self.target, self.job_id, self.tally = target, job_id, tally
        self._check = validator(target.schema)
        self._trusted = ("schema", target.schema.encode()) if trust_schema_header else None
        # Delivery reports for failures only: a Python call per acknowledged record cost about
        # as much as producing it. Written = submitted - refused, once the final flush is done.
        config = producer_config(
            settings,
            **{
                "linger.ms": 5,
                "batch.size": 1_000_000,
                "on_delivery": self._delivered,
                "delivery.report.only.error": True,
            },
        )
        self._producer = Producer(config)
        self._failed: list[Outgoing] = []
        self._submitted = self._refused = 0
        self._closed = False

    def write_batch(self, items: list[Record]) -> None:
        pending: list[Outgoing] = []
        job = (REPLAY_JOB, self.job_id.encode())
        prefixes: dict[int | None, str] = {}  # `topic:partition:` once per partition, not record
        for record in items:
            headers = record.headers() or []
            if self._trusted is None or self._trusted not in headers:
                try:
                    self._check(orjson.loads(record.value() or b"null"))
                except (orjson.JSONDecodeError, SchemaValidationError) as exc:
                    self.tally.refuse(where(record), f"schema {self.target.schema}: {exc}")
                    continue
            if headers and headers[-1][0] == REPLAY_JOB:  # a replay of a replay: marks go last
                headers = [(n, v) for n, v in headers if n not in _MARKS]
            partition = record.partition()
            prefix = prefixes.get(partition)
            if prefix is None:
                prefix = prefixes[partition] = f"{record.topic()}:{partition}:"
            headers += [(REPLAY_OF, f"{prefix}{record.offset()}".encode()), job]
            pending.append((record.key(), record.value(), headers))
        self._submitted += len(pending)
        self._produce(pending)
        self._producer.poll(0)  # serve delivery reports
        if self._failed:
            failed, self._failed = self._failed, []
            self._produce(failed)

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            return  # only failures are reported (delivery.report.only.error)
        if err.retriable() or err.code() == KafkaError._MSG_TIMED_OUT:
            headers = cast(list[tuple[str, bytes | None]], msg.headers() or [])
            self._failed.append((msg.key(), msg.value(), headers))
        else:
            self._refused += 1
            self.tally.refuse(f"{self.target.name} key {msg.key()!r}", f"broker: {err.str()}")

    def _produce(self, records: Sequence[Outgoing]) -> None:
        topic, produce = self.target.name, self._producer.produce
        for key, value, headers in records:
            while True:
                try:
                    produce(topic, value, key, headers=cast(Any, headers))
                    break
                except BufferError:  # the local queue is full: let deliveries drain it
                    self._producer.poll(0.05)

    def close(self) -> None:
        """Flush; produce again what was not acknowledged, until all is (or give up)."""
        if self._closed:
            return
        for attempt in range(1, MAX_ATTEMPTS + 1):
            self._producer.flush()
            if not self._failed:
                self._closed = True
                self.tally.written += self._submitted - self._refused
                return
            failed, self._failed = self._failed, []
            log.warning("%d records not acknowledged; retry %d", len(failed), attempt)
            time.sleep(RETRY.delay(attempt, random.random))
            self._produce(failed)
        self._closed = True
        raise ReplayFailed(f"{len(self._failed)} records were never acknowledged by the broker")

    def abort(self) -> None:
        if not self._closed:
            self._closed = True
            self._producer.flush(5)


def once(partition: Writer) -> DynamicSink[Any]:
    """The sink of a one-worker replay writing through `partition`."""
    return _Once(partition)
