"""Errors raised by the pure processors; a poison record says where it is and why it failed."""

from __future__ import annotations

from processors.dead_letters import DeadLetterReason
from soma.errors import SomaError


class ProcessorError(SomaError):
    """Base class for processor failures."""


class PoisonRecord(ProcessorError):
    """A record no retry can fix: it goes to its topic's dead-letter queue.

    Carries the record's position so logs and dead letters point at it (after arroyo's
    `InvalidMessage`).
    """

    def __init__(
        self, reason: DeadLetterReason, message: str, *, topic: str, partition: int, offset: int
    ) -> None:
        super().__init__(f"{topic}[{partition}]@{offset}: {message}")
        self.reason, self.detail = reason, message
        self.topic, self.partition, self.offset = topic, partition, offset
