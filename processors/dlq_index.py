"""The dead-letter index: one entry per dead letter, its status moved by operator actions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

ENTRY_SEPARATOR = "#"  # entry id = `<DLQ record key>#<dlq_id>`; dlq ids never contain it
MESSAGE_CHARS = 500  # the index keeps the start of the error; the envelope has all of it
OPEN = "open"
STATUS_OF_ACTION = {"acked": "acked", "replayed": "replayed", "purged": "purged", "reopened": OPEN}


def entry_id(dlq_key: str, dlq_id: str) -> str:
    return f"{dlq_key}{ENTRY_SEPARATOR}{dlq_id}"


def entry_partition_key(entry: str) -> str:
    """The DLQ record key inside an entry id: it decides the entry's partition."""
    return entry.rsplit(ENTRY_SEPARATOR, 1)[0]


@dataclass(frozen=True)
class DlqEntry:
    """What the index keeps of a dead letter (the envelope itself stays in its DLQ topic)."""

    entry_id: str
    dlq_id: str
    tenant: str | None
    flow: str
    reason: str
    error_class: str
    error_message: str
    failed_at: str
    source_topic: str
    source_partition: int
    source_offset: int
    consumer_group: str
    attempts: int
    dlq_topic: str  # where the full envelope is: read it back by position to inspect or replay
    dlq_partition: int
    dlq_offset: int
    status: str = OPEN
    status_by: str | None = None
    status_at: str | None = None
    replays: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DlqEntry:
        return cls(**dict(data))


def entry_from_envelope(
    envelope: Mapping[str, Any], *, dlq_key: str, topic: str, partition: int, offset: int
) -> DlqEntry:
    """The index entry of a dead letter read at `topic[partition]@offset`."""
    return DlqEntry(
        entry_id=entry_id(dlq_key, envelope["dlq_id"]),
        dlq_id=envelope["dlq_id"],
        tenant=envelope["tenant"],
        flow=envelope["flow"],
        reason=envelope["reason"],
        error_class=envelope["error_class"],
        error_message=envelope["error_message"][:MESSAGE_CHARS],
        failed_at=envelope["failed_at"],
        source_topic=envelope["source_topic"],
        source_partition=envelope["source_partition"],
        source_offset=envelope["source_offset"],
        consumer_group=envelope["consumer_group"],
        attempts=envelope["attempts"],
        dlq_topic=topic,
        dlq_partition=partition,
        dlq_offset=offset,
    )


def index_envelope(current: DlqEntry | None, new: DlqEntry) -> DlqEntry:
    """A dead letter indexed again (dead-lettered twice after a crash, or re-read after a
    restart) keeps its first position and whatever status operators gave it."""
    return current if current is not None else new


def apply_action(entry: DlqEntry, action: Mapping[str, Any]) -> DlqEntry:
    """The entry after an operator's action (`dlq_action` event)."""
    status = STATUS_OF_ACTION[action["action"]]
    return replace(
        entry,
        status=status,
        status_by=action["actor"],
        status_at=action["at"],
        replays=entry.replays + (action["action"] == "replayed"),
    )
