"""Errors of the topic layer: the broker refused or never acknowledged a record."""

from __future__ import annotations

from soma.errors import SomaError, TransientError


class TopicError(SomaError):
    """Base class for topic-layer failures."""


class BrokerUnavailable(TopicError, TransientError):
    """The broker did not acknowledge in time; nothing was accepted. Retry after a pause."""

    def __init__(self, message: str, retry_after_s: int = 2) -> None:
        TransientError.__init__(self, message, retry_after_s=retry_after_s)
        self.retry_after_s: int = retry_after_s


class ProducerQueueFull(BrokerUnavailable):
    """The local send queue is full (back-pressure); retry after a pause."""


class RecordRejected(TopicError):
    """The broker refused the record for a reason retrying will not fix (size, authorization)."""
