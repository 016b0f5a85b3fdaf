"""The one producer path: build a validated record, send it, and report the broker's ack."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from soma.queues import QueueMeter
from soma.settings import Settings
from topics.errors import BrokerUnavailable, ProducerQueueFull, RecordRejected
from topics.records import OutgoingRecord, RecordContext, build_record
from topics.registry import TopicRegistry

# Errors after which the same record may succeed later: the caller gets 503 + Retry-After.
_RETRIABLE = {
    KafkaError._MSG_TIMED_OUT,
    KafkaError._TIMED_OUT,
    KafkaError._TRANSPORT,
    KafkaError._ALL_BROKERS_DOWN,
    KafkaError.NOT_ENOUGH_REPLICAS,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.REQUEST_TIMED_OUT,
    KafkaError._UNKNOWN_TOPIC,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
}


@dataclass(frozen=True)
class Delivery:
    """Where the broker stored a record."""

    topic: str
    partition: int
    offset: int
    key: str


def producer_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """librdkafka settings every SomaStream producer shares."""
    config: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap,
        # Java-compatible murmur2 so keys land where Faust/aiokafka and Java put them.
        "partitioner": "murmur2_random",
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 2,
        "compression.type": "lz4",
        "message.timeout.ms": int(settings.produce_timeout_s * 1000),
        # The local queue is bounded (soma/settings.py says why these sizes): past either bound
        # produce() raises BufferError at once, which becomes ProducerQueueFull (503 / retry).
        "queue.buffering.max.messages": settings.producer_queue_max_messages,
        "queue.buffering.max.kbytes": settings.producer_queue_max_kbytes,
        # Reconnect fast after a broker restart instead of backing off for a minute.
        "reconnect.backoff.max.ms": 1000,
        "socket.connection.setup.timeout.ms": 3000,
        "topic.metadata.refresh.interval.ms": 30000,
    }
    config.update(overrides)
    return config


def _delivery_error(err: KafkaError) -> Exception:
    if err.code() in _RETRIABLE or err.retriable():
        return BrokerUnavailable(f"broker did not acknowledge: {err.str()}")
    return RecordRejected(f"broker refused the record: {err.str()}")


class EventProducer:
    """Thread-backed confluent-kafka producer with asyncio delivery futures.

    Its local queue is bounded (`producer_queue_max_messages`): a record that does not fit is
    refused at once with ProducerQueueFull, never buffered. `queue` counts records handed
    to librdkafka whose delivery report has not arrived (each one has a pending future);
    with `queue_name` it is exported as `soma_queue_*{queue=queue_name}`.
    """

    def __init__(
        self,
        settings: Settings,
        registry: TopicRegistry | None = None,
        *,
        queue_name: str | None = None,
        **config_overrides: Any,
    ) -> None:
        self.settings = settings
        self.registry = registry or TopicRegistry(settings.topic_prefix)
        config = producer_config(settings, **config_overrides)
        self._producer = Producer(config)
        self.queue = QueueMeter(
            queue_name or "producer",
            int(config["queue.buffering.max.messages"]),
            export=queue_name is not None,
        )
        self._closed = threading.Event()
        self._poller = threading.Thread(target=self._poll_loop, name="producer-poll", daemon=True)
        self._poller.start()

    def _poll_loop(self) -> None:
        while not self._closed.is_set():
            self._producer.poll(0.05)

    async def send(self, topic: str, event: Mapping[str, Any], ctx: RecordContext) -> Delivery:
        """Validate and send one event to a registry topic; returns after the broker's ack."""
        (delivery,) = await self.send_many(topic, [event], ctx)
        return delivery

    async def send_many(
        self, topic: str, events: Sequence[Mapping[str, Any]], ctx: RecordContext
    ) -> list[Delivery]:
        """Validate every event first (all or nothing at the contract), then send and await acks.

        A record that fails delivery raises; the others may still have been stored, which is
        why every record carries an event id consumers dedupe on.
        """
        spec = self.registry.get(topic)
        records = [build_record(spec, event, ctx) for event in events]
        return await self.send_records(records)

    async def send_records(self, records: Sequence[OutgoingRecord]) -> list[Delivery]:
        """Send pre-built records and await every acknowledgement."""
        loop = asyncio.get_running_loop()
        futures = [self._enqueue(loop, record) for record in records]
        results = await asyncio.gather(*futures, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return [r for r in results if isinstance(r, Delivery)]

    async def send_settled(self, records: Sequence[OutgoingRecord]) -> list[Exception | None]:
        """Send pre-built records; per record, None once acknowledged or the error it met."""
        loop = asyncio.get_running_loop()
        futures = [self._enqueue(loop, record) for record in records]
        results = await asyncio.gather(*futures, return_exceptions=True)
        out: list[Exception | None] = []
        for result in results:
            if isinstance(result, Exception):
                out.append(result)
            elif isinstance(result, BaseException):
                raise result  # cancellation: not a delivery outcome
            else:
                out.append(None)
        return out

    def _enqueue(
        self, loop: asyncio.AbstractEventLoop, record: OutgoingRecord
    ) -> asyncio.Future[Delivery]:
        future: asyncio.Future[Delivery] = loop.create_future()

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            self.queue.remove()
            if err is not None:
                loop.call_soon_threadsafe(_settle, future, None, _delivery_error(err))
            else:
                partition, offset = msg.partition(), msg.offset()
                delivery = Delivery(
                    msg.topic() or record.topic,
                    -1 if partition is None else partition,
                    -1 if offset is None else offset,
                    record.key or "",
                )
                loop.call_soon_threadsafe(_settle, future, delivery, None)

        # librdkafka's stub types headers values as str | bytes | None; ours are all bytes.
        headers: list[tuple[str, str | bytes | None]] = list(record.headers)
        try:
            self._producer.produce(
                record.topic,
                record.value,
                record.key_bytes(),
                headers=headers,
                on_delivery=on_delivery,
            )
        except BufferError:
            future.set_exception(self._queue_full())
        except KafkaException as exc:
            future.set_exception(_delivery_error(exc.args[0]))
        else:
            # Counted once librdkafka holds the record (a refused one never was), so the mark
            # never exceeds librdkafka's own bound.
            self.queue.add()
        return future

    def _queue_full(self) -> ProducerQueueFull:
        return ProducerQueueFull(
            f"producer queue is full ({self.queue.depth()} records await the broker's ack, "
            f"bound {self.queue.capacity}); retry shortly"
        )

    def produce_nowait(self, record: OutgoingRecord) -> None:
        """Fire-and-track send for synchronous callers; pair with `flush`.

        Raises ProducerQueueFull when the local queue is full.
        """
        headers: list[tuple[str, str | bytes | None]] = list(record.headers)
        try:
            self._producer.produce(
                record.topic,
                record.value,
                record.key_bytes(),
                headers=headers,
                on_delivery=lambda err, msg: self.queue.remove(),
            )
        except BufferError:
            raise self._queue_full() from None
        self.queue.add()

    def flush(self, timeout_s: float = 30.0) -> int:
        """Wait for outstanding records; returns how many are still unacknowledged."""
        return int(self._producer.flush(timeout_s))

    def close(self, timeout_s: float = 5.0) -> None:
        self._producer.flush(timeout_s)
        self._closed.set()
        self._poller.join(timeout=2)


def _settle(
    future: asyncio.Future[Delivery], value: Delivery | None, error: Exception | None
) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    elif value is not None:
        future.set_result(value)
