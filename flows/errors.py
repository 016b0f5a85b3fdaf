"""Errors of the stream flows; each message says what the operator should do."""

from __future__ import annotations

from soma.errors import SomaError


class FlowError(SomaError):
    """Base class for flow failures."""


class UnknownFlow(FlowError):
    """No flow of that name is registered in flows/registry.py."""


class SourceTopicMissing(FlowError):
    """A topic the flow reads or writes (source, output, dead-letter) does not exist."""

    def __init__(self, topic: str) -> None:
        super().__init__(f"topic {topic!r} does not exist: run `soma topics apply` first")
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
    """A flow wrote a table key that does not live on the partition of the events it read.

    A flow bug: the write is refused (and the events that caused it dead-lettered) instead of
    splitting the key's state over two changelog partitions.
    """


class PartitionCountMismatch(FlowError):
    """The flow's source topics do not all have the same number of partitions."""

    def __init__(self, counts: dict[str, int]) -> None:
        super().__init__(
            f"source topics must be co-partitioned (same partition count): {counts}. Resize "
            "the smaller topics with `kafka-topics --alter --partitions`, then restart."
        )
        self.counts = counts
