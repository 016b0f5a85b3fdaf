"""Errors of the stream flows; each message says what the operator should do."""

from __future__ import annotations

from soma.errors import SomaError


class FlowError(SomaError):
    """Base class for flow failures."""


class UnknownFlow(FlowError):
    """No flow of that name is registered in flows/registry.py."""


class SourceTopicMissing(FlowError):
    """The flow's source topic does not exist on the broker."""

    def __init__(self, topic: str) -> None:
        super().__init__(f"source topic {topic!r} does not exist: run `soma topics apply` first")
        self.topic = topic


class ChangelogMismatch(FlowError):
    """The table's changelog topic exists with a layout the table cannot use."""

    def __init__(self, topic: str, drift: list[str]) -> None:
        super().__init__(
            f"changelog topic {topic!r} differs from what the table needs ({'; '.join(drift)}). "
            "The source topic was probably resized: stop every worker of the group, delete the "
            "changelog topic and the workers' state directories, then restart (state is rebuilt "
            "from the source topic)."
        )
        self.topic = topic


class NotCoPartitioned(FlowError):
    """A source record sits on another partition than murmur2 of its key says.

    Carries where the record is; the flow stops instead of writing the key's state into the
    wrong changelog partition.
    """

    def __init__(self, topic: str, partition: int, offset: int, expected: int) -> None:
        super().__init__(
            f"record {topic}[{partition}]@{offset} belongs on partition {expected} by murmur2 of "
            "its key: its producer does not use the Java-compatible murmur2 partitioner. Fix the "
            "producer (librdkafka: partitioner=murmur2_random), then restart the worker."
        )
        self.topic, self.partition, self.offset, self.expected = topic, partition, offset, expected
