"""The dead-letter policy every flow shares: envelope records, the limit, and halting past it."""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

import orjson

from processors.dead_letters import (
    DeadLetterReason,
    SourceRecord,
    dead_letter_envelope,
    dead_letter_key,
)
from processors.tracing import new_traceparent, parse_traceparent
from schemas import validator
from soma.halts import EXIT_HALTED, record_halt
from topics.records import OutgoingRecord
from topics.registry import TopicSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeadLetter:
    """A record on its way to its source's dead-letter topic."""

    record: SourceRecord
    reason: DeadLetterReason
    error: BaseException
    attempts: int = 1


def dead_letter_record(
    dead: DeadLetter, dlq: TopicSpec, *, flow: str, consumer_group: str
) -> OutgoingRecord:
    """The DLQ record of `dead`: validated envelope, keyed by the original key."""
    envelope = dead_letter_envelope(
        dead.record,
        flow=flow,
        consumer_group=consumer_group,
        reason=dead.reason,
        error=dead.error,
        attempts=dead.attempts,
        failed_at=datetime.now(UTC),
    )
    validator(dlq.schema)(envelope)  # an envelope that breaks its schema is a kit bug: fail
    raw_trace = dead.record.header("traceparent")
    trace = parse_traceparent(raw_trace.decode("latin-1") if raw_trace else None)
    headers = [
        ("request_id", str(uuid.uuid4()).encode()),
        ("traceparent", (trace.child() if trace else new_traceparent()).header().encode()),
        ("schema", dlq.schema.encode()),
        ("dlq_id", envelope["dlq_id"].encode()),
    ]
    if envelope["tenant"] is not None:
        headers.insert(0, ("tenant", envelope["tenant"].encode()))
    return OutgoingRecord(dlq.name, dead_letter_key(envelope), orjson.dumps(envelope), headers)


def halt(stack_dir: Path, app_id: str, port: int, flow: str, reason: str) -> NoReturn:
    """Stop the worker for good: one log line, the reason on disk, exit without acking.

    The batch that crossed the limit is neither dead-lettered nor committed: after the fix,
    the restarted worker processes it again from the last committed offset.
    """
    message = (
        f"flow {flow} halted: {reason}. Dead-lettering stopped so a bad deploy or a bad "
        "producer cannot move the whole topic into the DLQ; inspect the DLQ, fix the cause, "
        "then restart the worker (`soma up`)."
    )
    log.critical(message)
    record_halt(stack_dir, app_id, port, flow, reason)
    logging.shutdown()
    os._exit(EXIT_HALTED)
