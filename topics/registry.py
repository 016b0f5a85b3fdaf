"""Every topic of the plane: partitions, cleanup, retention, key rule, value schema and DLQ."""

from __future__ import annotations

from dataclasses import dataclass, replace

from processors.keys import KeyRule
from soma.errors import SomaError

DAY_MS = 24 * 60 * 60 * 1000


@dataclass(frozen=True)
class TopicSpec:
    """What a topic is and how records on it are keyed and validated."""

    name: str
    partitions: int
    key_rule: KeyRule
    schema: str  # schema id in schemas/ (file `<schema>.json`)
    cleanup_policy: str = "delete"
    retention_ms: int = 7 * DAY_MS
    dlq: str | None = None  # dead letters of this topic go there
    public: bool = False  # producible by clients through POST /v1/events/{topic}
    description: str = ""
    max_message_bytes: int | None = None  # None: the broker's default

    def configs(self) -> dict[str, str]:
        """Broker-side topic configs that `topics apply` sets and checks for drift."""
        configs = {"cleanup.policy": self.cleanup_policy, "retention.ms": str(self.retention_ms)}
        if self.max_message_bytes is not None:
            configs["max.message.bytes"] = str(self.max_message_bytes)
        return configs

    def with_prefix(self, prefix: str) -> TopicSpec:
        """The same topic under a name prefix (isolated stacks, tests)."""
        if not prefix:
            return self
        dlq = f"{prefix}{self.dlq}" if self.dlq else None
        return replace(self, name=f"{prefix}{self.name}", dlq=dlq)


def _source(
    name: str,
    key: KeyRule,
    schema: str,
    *,
    public: bool,
    description: str,
    partitions: int = 6,
    retention_ms: int = 7 * DAY_MS,
    cleanup_policy: str = "delete",
) -> TopicSpec:
    return TopicSpec(
        name=name,
        partitions=partitions,
        key_rule=key,
        schema=schema,
        cleanup_policy=cleanup_policy,
        retention_ms=retention_ms,
        dlq=f"{name}.dlq",
        public=public,
        description=description,
    )


SOURCE_TOPICS: tuple[TopicSpec, ...] = (
    _source(
        "conversation.inbound",
        KeyRule.TENANT_SESSION,
        "conversation_event",
        public=True,
        description="user messages entering the platform",
    ),
    _source(
        "conversation.outbound",
        KeyRule.TENANT_SESSION,
        "conversation_event",
        public=True,
        description="assistant messages leaving the platform",
    ),
    _source(
        "tool.requests",
        KeyRule.TENANT_SESSION,
        "tool_request",
        public=True,
        description="tool calls requested by agents",
    ),
    _source(
        "tool.results",
        KeyRule.TENANT_SESSION,
        "tool_result",
        public=True,
        description="tool call results (remembered too)",
    ),
    _source(
        "memory.requests",
        KeyRule.TENANT_SESSION,
        "memory_write",
        public=False,
        description="explicit memory writes from /v1/memory/*",
    ),
    _source(
        "memory.outbox",
        KeyRule.TENANT_IDEMPOTENCY,
        "outbox_item",
        public=False,
        description="writes that could not reach the memory service yet",
    ),
    _source(
        "memory.wal",
        KeyRule.TENANT_IDEMPOTENCY,
        "memory_wal",
        public=False,
        cleanup_policy="compact,delete",
        retention_ms=30 * DAY_MS,
        description="one record per write the memory service acknowledged",
    ),
    _source(
        "agent.audit.v1",
        KeyRule.TENANT,
        "agent_audit",
        public=False,
        retention_ms=365 * DAY_MS,
        description="audit events of decisions and admin actions",
    ),
    _source(
        "agent.runs.v1",
        KeyRule.TENANT_RUN,
        "agent_run",
        public=True,
        description="agent run lifecycle",
    ),
    _source(
        "agent.steps.v1",
        KeyRule.TENANT_RUN,
        "agent_step",
        public=True,
        description="steps inside an agent run",
    ),
    _source(
        "agent.tools.v1",
        KeyRule.TENANT_RUN,
        "agent_tool",
        public=True,
        description="tool invocations inside an agent run",
    ),
    _source(
        "agent.benchmarks.v1",
        KeyRule.TENANT_RUN,
        "agent_benchmark",
        public=True,
        description="benchmark results of agent runs",
    ),
    _source(
        "analytics.session_counts",
        KeyRule.TENANT,
        "tenant_event_count",
        public=False,
        description="per-tenant event counts written by bounded Bytewax jobs",
    ),
    _source(
        "dlq.actions",
        KeyRule.ORIGINAL,
        "dlq_action",
        public=False,
        # Co-partitioned with the DLQ topics: an action lands where its dead letter is indexed.
        partitions=3,
        retention_ms=30 * DAY_MS,
        description="operator actions on dead letters (ack, replayed, purged), read by dlq-index",
    ),
)


# A dead letter carries its record base64-encoded (4/3 of the size) plus context, so a DLQ
# takes records larger than any its source accepts (the broker's default limit is ~1 MiB).
DLQ_MAX_MESSAGE_BYTES = 4 * 1024 * 1024


# Dead letters that the dead-letter index itself cannot read (not an envelope: a foreign
# producer wrote to a DLQ). Terminal: nothing consumes it; inspect it with Kafka's tools.
INVALID_DEAD_LETTERS = "dlq.invalid"


def _dlq(source: TopicSpec) -> TopicSpec:
    assert source.dlq is not None
    return TopicSpec(
        name=source.dlq,
        partitions=3,
        key_rule=KeyRule.ORIGINAL,
        schema="dlq_envelope",
        retention_ms=30 * DAY_MS,
        dlq=INVALID_DEAD_LETTERS,
        description=f"dead letters of {source.name}",
        max_message_bytes=DLQ_MAX_MESSAGE_BYTES,
    )


DLQ_TOPICS: tuple[TopicSpec, ...] = (
    *(_dlq(t) for t in SOURCE_TOPICS),
    TopicSpec(
        name=INVALID_DEAD_LETTERS,
        partitions=3,
        key_rule=KeyRule.ORIGINAL,
        schema="dlq_envelope",
        retention_ms=30 * DAY_MS,
        description="records found on a DLQ topic that are not dead-letter envelopes",
        max_message_bytes=DLQ_MAX_MESSAGE_BYTES,
    ),
)
ALL_TOPICS: tuple[TopicSpec, ...] = SOURCE_TOPICS + DLQ_TOPICS


def dead_letter_topics() -> list[str]:
    """Registry names of the DLQ topics the dead-letter index reads (every `<source>.dlq`)."""
    return [t.name for t in DLQ_TOPICS if t.name != INVALID_DEAD_LETTERS]


class UnknownTopic(SomaError, LookupError):
    """No topic of that name is registered (the gateway answers 404)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no topic {name[:120]!r} in the registry")
        self.name = name


class TopicRegistry:
    """The registered topics under one name prefix."""

    def __init__(self, prefix: str = "", specs: tuple[TopicSpec, ...] = ALL_TOPICS) -> None:
        self.prefix = prefix
        self._by_logical = {spec.name: spec.with_prefix(prefix) for spec in specs}

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._by_logical.values())

    def get(self, logical_name: str) -> TopicSpec:
        """The spec for a registry name such as `conversation.inbound` (prefix applied)."""
        try:
            return self._by_logical[logical_name]
        except KeyError:
            raise UnknownTopic(logical_name) from None

    def public(self) -> list[str]:
        """Registry names clients may produce to directly."""
        return [name for name, spec in self._by_logical.items() if spec.public]
